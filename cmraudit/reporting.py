"""The one report builder: ``run``, ``audit`` and ``evaluate`` all assemble report.json here (docs/report.md).

Each command passes what it knows (its config, the datasets, the sections its stages returned, the
generator or an external set's description); the builder adds the same provenance to every report
(versions, device, git commit, data fingerprints, seeds, timings) and computes the verdicts.
"""
from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Any, Mapping

from . import __version__
from .estimates import skipped
from .report.gate import compute_verdicts
from .report.provenance import build_run_section
from .results import (
    STAGE_ORDER,
    DataSection,
    DPSection,
    GeneratorSection,
    Report,
    RunSection,
    section_of,
)


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def generator_section(gen: Any, info: Any = None, *, fit_time_s: float | None = None) -> GeneratorSection:
    """The ``generator`` section of a fitted generator (``info``: its registry entry, or None when unknown)."""
    training = getattr(gen, "training_", {}) or {}
    fields: dict = {}
    if info is not None:
        fields.update({"distribution": info.distribution, "version": info.version, "entry_point": info.value})
    fields["tags"] = gen.tags.to_dict() if hasattr(getattr(gen, "tags", None), "to_dict") else None
    t = getattr(gen, "training_time_s_", fit_time_s)
    fields["training_time_s"] = None if t is None else round(float(t), 2)
    fields["training"] = {k: ({kk: vv for kk, vv in v.items() if kk != "losses"} if isinstance(v, dict) else v)
                          for k, v in training.items()}
    name = info.name if info is not None else getattr(gen, "name", type(gen).__name__)
    return GeneratorSection(name=name, params=gen.get_params(), dp=DPSection.from_dict(getattr(gen, "dp_", None)),
                            fields=fields)


def external_section(name: str, **fields: Any) -> GeneratorSection:
    """The ``generator`` section of a synthetic set without its generator (``audit`` without --model, ``evaluate``)."""
    return GeneratorSection(name=name, params={}, dp=None, fields=fields)


def build_report(*, command: str, config: Mapping[str, Any], seed: int, seeds: Mapping[str, int], device: str,
                 source: str | None, parts: Mapping[str, Any], sections: Mapping[str, Any], started: str,
                 timings: Mapping[str, float], generator: GeneratorSection, plugins: Mapping[str, Any] | None = None,
                 paired: Any = None, data_extra: Mapping[str, Any] | None = None,
                 counts: Mapping[str, Mapping[str, int]] | None = None,
                 dp_audit: Mapping[str, Any] | None = None) -> Report:
    """Assemble the report (schema :data:`cmraudit.results.SCHEMA_VERSION`): run, data, generator, stages, verdicts.

    ``parts``: name → Dataset (fingerprinted, counted in patients and slices unless ``counts`` overrides);
    ``sections``: stage → engine result (dict, object with ``to_dict()``, or a typed section); a stage not
    given is skipped with the reason ``"not part of <command>"``."""
    fps = {k: v.fingerprint() for k, v in parts.items()}
    if paired is not None and hasattr(paired, "fingerprint"):  # paired fidelity reads it: its data is an input too
        fps["synthetic_paired"] = paired.fingerprint()
    run = build_run_section(seed=seed, config=dict(config), device=device, data_fingerprints=fps,
                            plugins=dict(plugins or {}), command=command)
    run.setdefault("versions", {}).update(_module_versions())
    run.update({"seeds": dict(seeds), "started_utc": started, "finished_utc": now_utc(),
                "timings_s": {k: round(v, 2) for k, v in timings.items()}})
    n = {k: {"patients": int(len(v.patients)), "slices": int(len(v))} for k, v in parts.items()}
    n.update(counts or {})
    paired_entry = {} if paired is None else {"synthetic_paired": {"slices": int(len(paired))}}
    data = DataSection(source=source, counts={**n, **paired_entry},
                       extra={**({"synthetic_paired": None} if paired is None else {}), **dict(data_extra or {})})
    staged = {s: section_of(s, sections[s]) if s in sections else
              section_of(s, skipped(f"not part of {command}")) for s in STAGE_ORDER}
    order = tuple(sections) + tuple(s for s in STAGE_ORDER if s not in sections)
    draft = Report(run=RunSection.from_dict(run), data=data, generator=generator, verdicts={}, stage_order=order,
                   dp_audit=dp_audit, **staged)
    return Report(run=draft.run, data=data, generator=generator, verdicts=compute_verdicts(draft.to_dict()),
                  stage_order=order, dp_audit=dp_audit, **staged)


def _module_versions() -> dict:
    """The versions of the libraries actually imported (the metadata can differ from an editable or vendored build)."""
    import monai
    import torch

    return {"cmraudit": __version__, "torch": torch.__version__, "monai": monai.__version__,
            "python": platform.python_version()}
