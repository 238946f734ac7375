"""Checkpoint I/O: weights as safetensors (or a plain state_dict) plus a JSON config.

Loading never unpickles code: safetensors files hold tensors only, and ``.pt`` files are
read with ``torch.load(weights_only=True)``; a file that needs arbitrary Python objects
is refused with :class:`~cmraudit.errors.CheckpointError`. Every write is atomic
(temporary file or directory, then ``os.replace``/rename), so an interrupted run never
leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Iterator, Mapping

from .. import io_guard
from .._lazy import LazyModule
from ..errors import CheckpointError, CmrAuditError
from .registry import get_generator_class

torch = LazyModule("torch")  # imported on first use: importing this module stays light

CONFIG_NAME = "config.json"
FORMAT = "cmraudit-generator"
FORMAT_VERSION = 1


# ------------------------------------------------------------------ atomic helpers
def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` via a temporary sibling file and ``os.replace``."""
    path = Path(path)
    with io_guard.write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with io_guard.atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``path`` (only a directory cmraudit wrote)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path}: already exists; choose another directory or allow overwriting")
    with io_guard.atomic_dir(path, kind="model") as tmp:
        yield tmp


# ------------------------------------------------------------------ tensors
def save_weights(
    path: str | os.PathLike, state: Mapping[str, torch.Tensor], *, metadata: dict[str, str] | None = None
) -> Path:
    """Save a flat state_dict atomically. ``.safetensors`` (default) or ``.pt`` by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with io_guard.atomic_file(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(_untie(tensors), tmp, metadata=metadata)
        else:
            torch.save(tensors, tmp)
    return path


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage: clone the later duplicates."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -id(v)
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state_dict without unpickling code; refuse anything else with CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    obj = safe_torch_load(path)
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path}: expected a flat state_dict (name -> tensor), got {type(obj).__name__}")
    return obj


def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only.

    A file that contains a pickled Python object (a class, a function, a module) is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load — the file contains pickled Python objects, not only weights "
            f"(cmraudit never unpickles code). Re-save it as a plain state_dict or safetensors file. "
            f"Detail: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a readable weights file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e


def save_state(path: str | os.PathLike, state: dict) -> Path:
    """Save a nested training state (tensors, numbers, strings, lists, dicts) atomically with torch.save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with io_guard.atomic_file(path) as tmp:
        torch.save(state, tmp)
    return path


# ------------------------------------------------------------------ configs
def read_config(path: str | os.PathLike) -> dict:
    """Read ``config.json`` of a saved generator directory and check its format."""
    path = Path(path)
    cfg_path = path / CONFIG_NAME if path.is_dir() else path
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{path}: no {CONFIG_NAME}; this is not a saved cmraudit generator (save it with gen.save(dir))"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: unreadable JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}")
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: format {cfg.get('format')!r} is not {FORMAT!r}")
    version = cfg.get("format_version", -1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{cfg_path}: format_version {version!r} is not an integer")
    if not isinstance(cfg.get("params", {}), dict):
        raise CheckpointError(f"{cfg_path}: params must be a JSON object")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: format_version {cfg.get('format_version')} is newer than this cmraudit supports "
            f"({FORMAT_VERSION}); upgrade cmraudit"
        )
    return cfg


def load_generator(path: str | os.PathLike):
    """Load any saved generator: the ``generator`` name in config.json picks the registered class."""
    cfg = read_config(path)
    name = cfg.get("generator")
    if not name or not isinstance(name, str):
        raise CheckpointError(f"{path}: config.json names no generator")
    cls = get_generator_class(name)
    try:
        return cls.load(path)
    except (CmrAuditError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - a malformed folder (missing params, another network's weights)
        line = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise CheckpointError(f"{path}: not a loadable {name!r} model folder ({type(e).__name__}: {line})") from e


# ------------------------------------------------------------------ the plugin kit's model folder
WEIGHTS_NAME = "weights.safetensors"


def save_checkpoint(path: str | os.PathLike, gen: Any, weights: Mapping[str, Any] | None = None, *,
                    fitted: Mapping[str, Any] | None = None) -> Path:
    """Write a plugin's model folder atomically: ``config.json`` (format, the generator's entry-point name, its
    ``get_params()``, JSON-ready ``fitted`` state) and ``weights.safetensors`` (tensors or arrays; never pickles)."""
    with atomic_dir(path) as tmp:
        if weights:
            save_weights(tmp / WEIGHTS_NAME, {k: torch.as_tensor(v) for k, v in weights.items()})
        write_json_atomic(tmp / CONFIG_NAME, {"format": FORMAT, "format_version": FORMAT_VERSION, "generator": gen.name,
                                              "params": gen.get_params(), "fitted": dict(fitted or {})})
    return Path(path)


def load_checkpoint(path: str | os.PathLike, cls: type) -> tuple[Any, dict[str, torch.Tensor], dict]:
    """Read a folder written by :func:`save_checkpoint` for class ``cls``: (new instance with the saved parameters,
    weights by name, fitted state). A folder of another generator is a CheckpointError."""
    cfg = read_config(path)
    if cfg.get("generator") != cls.name:
        raise CheckpointError(f"{path}: holds generator {cfg.get('generator')!r}, not {cls.name!r}")
    gen = cls(**cfg.get("params", {}))
    wpath = Path(path) / WEIGHTS_NAME
    return gen, (load_weights(wpath) if wpath.is_file() else {}), dict(cfg.get("fitted") or {})
