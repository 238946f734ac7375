"""Helpers that fill the ``run`` and ``data`` sections of report.json (schema 1.0).

The pipeline (and ``cmraudit audit``) call these so every report records the same
provenance: versions, seed, config, device, git commit, data fingerprints, plugins.
"""
from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

from ..estimates import skipped
from .schema import SCHEMA_VERSION

_PACKAGES = ("numpy", "scipy", "torch", "monai", "opacus", "faiss-cpu", "scikit-learn", "matplotlib")


def package_versions() -> dict[str, str | None]:
    """Installed versions of cmraudit and the libraries its numbers depend on (no imports)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("cmraudit", *_PACKAGES):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the source tree at ``path`` (cmraudit's own by default), or None."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def build_run_section(
    *,
    seed: int,
    config: Mapping[str, Any],
    device: str,
    data_fingerprints: Mapping[str, str | None] | None = None,
    plugins: Mapping[str, Any] | None = None,
    command: str | None = None,
) -> dict:
    """The ``run`` section: what was run, with what, where (required: cmraudit_version,
    created_utc, seed, device, config)."""
    versions = package_versions()
    return {
        "cmraudit_version": versions.get("cmraudit") or "unknown",
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": int(seed),
        "device": str(device),
        "config": dict(config),
        "command": command,
        "git_commit": git_commit(),
        "versions": versions,
        "data_fingerprints": dict(data_fingerprints or {}),
        "plugins": dict(plugins or {}),
    }


def split_counts(ds) -> dict:
    """``{"patients": int, "slices": int}`` of a Dataset."""
    return {"patients": int(len(ds.patients)), "slices": int(len(ds))}


def build_data_section(*, train, holdout, synthetic, test=None, source: str | None = None) -> dict:
    """The ``data`` section from Datasets: split sizes in patients and slices."""
    out = {
        "source": source,
        "train": split_counts(train),
        "holdout": split_counts(holdout),
        "synthetic": split_counts(synthetic),
    }
    out["test"] = None if test is None else split_counts(test)
    return out


def empty_report() -> dict:
    """A report skeleton with every stage skipped (for tests and partial runs)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {},
        "data": {},
        "generator": {"name": "unknown", "dp": None},
        "fidelity": skipped("not run"),
        "utility": skipped("not run"),
        "privacy": skipped("not run"),
        "verdicts": {},
    }
