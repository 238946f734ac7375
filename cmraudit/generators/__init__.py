"""Generators (docs/design.md § 5): the protocol, discovery and the reusable pieces of the built-in plugins.

- ``base``        GeneratorTags, the Generator protocol, check_is_fitted
- ``registry``    entry-point discovery (group ``cmraudit.generators``)
- ``checkpoint``  safetensors + config.json I/O; never unpickles code (CheckpointError)
- ``training``    the shared loop: AdamW + warm-up/cosine, clipping, EMA, AMP on CUDA, atomic checkpoints, resume, DDP
- ``diffusion``   MONAI UNet construction, noise schedules, ε-loss, DDPM/DDIM sampling
- ``mask_model``  stage 1: unconditional diffusion on one-hot masks
- ``two_stage``   TwoStageGenerator, the base class plugins subclass
- ``presets``     micro / quick / paper
- ``reference``   copycat / holdout / noise generators that validate the auditor

Submodules are imported on demand (torch and MONAI are heavy).
"""
