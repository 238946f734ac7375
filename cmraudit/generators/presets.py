"""Named hyper-parameter presets shared by the two-stage generators.

* ``micro`` — tests and the conformance suite: 32² px, channels (8, 16), a handful of steps.
* ``quick`` — CPU, 64² px images, channels (32, 64, 64), attention only at the lowest level, one res
  block, scaled-linear β, DDIM-25 image sampling (the DDPM image model predicts v with Min-SNR-5 weighting). The
  mask model works at 32² (``mask_size``; upsampled before the argmax), predicts x0, is conditioned on the slice's
  position along the stack and its phase (``mask_position_bins=4``; mask_model.slice_classes), trains 1000 steps
  (on the CPU beside the image stage, which it ends before: cmraudit/generators/side_by_side.py) and samples with
  DDIM-20. The whole ``cmraudit run`` takes about 5 minutes on 2 idle cores with native bfloat16
  (more without; docs/benchmarks.md).
* ``paper`` — the reference study (docs/design.md § 2): 128² px, channels 64–512 with attention at
  the two deepest levels, 1000-step linear β, batch 8, 400 epochs, lr 1e-4 with cosine warm-up,
  flips + ±20° rotation; GPU.

A preset is a dict of generator parameters; plugins add or override entries for their own
image stage through their class attribute ``presets`` (see :func:`resolve_preset`).
"""
from __future__ import annotations

from ..errors import UsageError

PRESET_NAMES = ("micro", "quick", "paper")

COMMON: dict[str, dict] = {
    "micro": {
        "image_size": 32,
        "mask_channels": (8, 16),
        "mask_attention_levels": (False, False),
        "mask_num_res_blocks": 1,
        "mask_norm_num_groups": 8,
        "mask_num_head_channels": 8,
        "mask_prediction_type": "sample",
        "mask_size": None,
        "mask_sampling_steps": None,
        "mask_position_bins": 0,
        "mask_steps": 6,
        "mask_epochs": None,
        "num_train_timesteps": 1000,
        "schedule": "scaled_linear_beta",
        "beta_start": 0.0005,
        "beta_end": 0.0195,
        "sampler": "ddim",
        "sampling_steps": 4,
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_steps": 2,
        "checkpoint_every": 0,
        "augment": False,
        "sample_batch_size": 16,
    },
    "quick": {
        "image_size": 64,
        "mask_channels": (32, 64, 64),
        "mask_attention_levels": (False, False, True),
        "mask_num_res_blocks": 1,
        "mask_norm_num_groups": 32,
        "mask_num_head_channels": 32,
        "mask_prediction_type": "sample",
        "mask_size": 32,
        "mask_sampling_steps": 20,
        "mask_position_bins": 4,  # slice position × phase classes (mask_model.slice_classes; docs/benchmarks.md)
        "mask_steps": 1000,  # trains beside the image stage on CPU: 1000 steps end before its 360 (docs/benchmarks.md)
        "mask_epochs": None,
        "num_train_timesteps": 1000,
        "schedule": "scaled_linear_beta",
        "beta_start": 0.0005,
        "beta_end": 0.0195,
        "sampler": "ddim",
        "sampling_steps": 25,
        "batch_size": 8,
        "lr": 5e-4,
        "warmup_steps": 30,
        "checkpoint_every": 100,
        "augment": False,
        "sample_batch_size": 32,
    },
    "paper": {
        "image_size": 128,
        "mask_channels": (64, 128, 256, 512),
        "mask_attention_levels": (False, False, True, True),
        "mask_num_res_blocks": 2,
        "mask_norm_num_groups": 32,
        "mask_num_head_channels": 32,
        "mask_prediction_type": "epsilon",
        "mask_size": None,
        "mask_sampling_steps": None,
        "mask_position_bins": 0,
        "mask_steps": None,
        "mask_epochs": 400,
        "num_train_timesteps": 1000,
        "schedule": "linear_beta",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "sampler": "ddpm",
        "sampling_steps": 1000,
        "batch_size": 8,
        "lr": 1e-4,
        "warmup_steps": 500,
        "checkpoint_every": 5000,
        "augment": True,
        "sample_batch_size": 32,
    },
}


def resolve_preset(name: str, plugin_presets: dict[str, dict] | None = None) -> dict:
    """The parameter dict of preset ``name``: common entries, then the plugin's own."""
    if name not in COMMON:
        raise UsageError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    params = dict(COMMON[name])
    params.update((plugin_presets or {}).get(name, {}))
    return params
