"""Fidelity of a synthetic set: distribution metrics per feature space (Fréchet distance, KID,
PRDC), paired metrics (PSNR, SSIM, MS-SSIM, LPIPS from local weights), diversity and mask
plausibility. Front door: :func:`evaluate_fidelity`. Definitions: docs/metrics.md."""
from .evaluate import FidelityResult, evaluate_fidelity, fidelity_stage
from .frechet import compute_frechet_distance
from .kid import compute_kid
from .prdc import compute_prdc

__all__ = [
    "FidelityResult",
    "compute_frechet_distance",
    "compute_kid",
    "compute_prdc",
    "evaluate_fidelity",
    "fidelity_stage",
]
