"""Inception-v3 feature space (2048-d pool features) — only from weights already on disk.

Fréchet distance on these features is FID and the polynomial MMD is KID. Every common FID
implementation downloads its Inception weights at run time; cmraudit never does. The weights
are looked up, in order:

1. ``weights=`` argument, else the environment variable ``CMRAUDIT_INCEPTION_WEIGHTS``: a
   torchvision Inception-v3 state dict (``inception_v3_google-0cc3c7bd.pth``);
2. the torch hub cache ``$TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth``.

When absent, :func:`find_inception_weights` returns the reason and the fidelity stage reports
the space as skipped — never a number from random weights. Note: torchvision's ImageNet
weights are not the TensorFlow 2015 graph used by pytorch-fid / clean-fid, so absolute values
differ from published FIDs; compare runs of cmraudit with each other.

Images: grey [-1, 1] → 3 channels, bilinear resize to 299², ImageNet mean/std normalisation.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..device import select_device
from ..errors import CheckpointError, NotFittedError, UsageError

WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
ENV_VAR = "CMRAUDIT_INCEPTION_WEIGHTS"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _hub_checkpoints() -> Path:
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def find_inception_weights(weights: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """(path, "") when Inception-v3 weights exist locally, else (None, reason)."""
    given = weights or os.environ.get(ENV_VAR)
    if given:
        p = Path(given).expanduser()
        return (
            (p, "")
            if p.is_file()
            else (None, f"Inception weights not found at {p} (from {'weights=' if weights else ENV_VAR})")
        )
    p = _hub_checkpoints() / WEIGHTS_FILE
    if p.is_file():
        return p, ""
    return None, (
        f"Inception FID/KID need local Inception-v3 weights ({WEIGHTS_FILE}), absent from {p.parent}; "
        f"set {ENV_VAR}=/path/to/{WEIGHTS_FILE} to enable them (no download is attempted)"
    )


class InceptionFeatures:
    """2048-d Inception-v3 pool features from local weights (``fit`` loads them; no training)."""

    name = "inception"

    def __init__(self, *, weights: str | os.PathLike | None = None, batch_size: int = 32, device: str = "auto"):
        self.weights = weights
        self.batch_size = batch_size
        self.device = device

    def get_params(self) -> dict:
        return {"weights": None if self.weights is None else str(self.weights), "batch_size": self.batch_size}

    def fit(self, pool=None, *, seed: int = 0, progress: bool = False) -> "InceptionFeatures":
        import torch
        import torchvision

        path, reason = find_inception_weights(self.weights)
        if path is None:
            raise UsageError(reason)
        try:
            net = torchvision.models.inception_v3(
                weights=None, aux_logits=True, init_weights=False, transform_input=False
            )
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a torchvision Inception-v3 state dict ({e})") from e
        net.fc = torch.nn.Identity()
        self.device_ = select_device(self.device)
        self.model_ = net.eval().to(self.device_)
        self.weights_path_ = path
        return self

    def transform_images(self, images: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        if getattr(self, "model_", None) is None:
            raise NotFittedError("InceptionFeatures is not fitted; call fit() (it loads the local weights)")
        mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_STD).view(1, 3, 1, 1)
        out = []
        with torch.no_grad():
            for s in range(0, len(images), self.batch_size):
                x = torch.from_numpy(np.asarray(images[s : s + self.batch_size], dtype=np.float32))[:, None]
                x = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
                x = ((x - mean) / std).to(self.device_)
                out.append(self.model_(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, 2048), np.float32)

    def transform(self, ds) -> np.ndarray:
        return self.transform_images(ds.images)
