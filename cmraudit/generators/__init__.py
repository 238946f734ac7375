"""Generators (docs/design.md § 5) and the plugin kit (docs/plugins.md).

What a plugin needs, from this one module (loaded on first use; torch stays unimported until asked for)::

    from cmraudit.generators import (BaseGenerator, GeneratorTags, check_is_fitted, synthetic_dataset,
                                     save_checkpoint, load_checkpoint, Dataset, UsageError)

- ``base``        BaseGenerator (the contract), GeneratorTags, check_is_fitted, synthetic_dataset
- ``registry``    entry-point discovery (group ``cmraudit.generators``); a plugin's name is its entry point's
- ``checkpoint``  safetensors + config.json I/O; never unpickles code (CheckpointError)
- ``training``    the shared loop: AdamW + warm-up/cosine, clipping, EMA, AMP on CUDA, atomic checkpoints, resume, DDP
- ``diffusion``   MONAI UNet construction, noise schedules, ε-loss, DDPM/DDIM sampling
- ``mask_model``  stage 1: unconditional diffusion on one-hot masks
- ``two_stage``   TwoStageGenerator, the base class of the two-stage diffusion plugins
- ``presets``     micro / quick / paper
- ``reference``   copycat / holdout / noise generators that validate the auditor
"""
from importlib import import_module

_KIT = {
    "BaseGenerator": ".base", "GeneratorTags": ".base", "Generator": ".base", "check_is_fitted": ".base",
    "synthetic_dataset": ".base", "PRESET_NAMES": ".presets", "resolve_preset": ".presets",
    "save_checkpoint": ".checkpoint", "load_checkpoint": ".checkpoint", "save_weights": ".checkpoint",
    "load_weights": ".checkpoint", "read_config": ".checkpoint", "load_generator": ".checkpoint",
    "TwoStageGenerator": ".two_stage", "get_plugin": ".registry", "list_generators": ".registry",
    "Dataset": "..data.dataset", "read_dataset": "..data.dataset", "STRUCTURES": "..data.dataset",
    "UsageError": "..errors", "DataError": "..errors", "CheckpointError": "..errors", "NotFittedError": "..errors",
}

__all__ = sorted(_KIT)


def __getattr__(name: str):
    if name in _KIT:
        value = getattr(import_module(_KIT[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cmraudit.generators' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_KIT))
