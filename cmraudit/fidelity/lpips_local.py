"""LPIPS from local weights only — never a download, never random weights.

LPIPS (Zhang et al. 2018) = a torchvision backbone (ImageNet weights) + linear heads
calibrated on human judgements. The ``lpips`` wheel ships only the heads; the backbone comes
from torchvision's pretrained weights, which torchvision would *download*. Here the backbone
file is looked up first and LPIPS is built only when it exists:

1. ``weights=`` argument, else the environment variable ``CMRAUDIT_LPIPS_WEIGHTS`` — a path to
   the torchvision state dict of the backbone (e.g. ``vgg16-397923af.pth``);
2. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<file>`` (``~/.cache/torch`` when
   ``TORCH_HOME`` is unset), where torchvision stores its downloads: ``vgg16-397923af.pth``
   (net ``vgg``, the reference study's choice), ``alexnet-owt-7be5be79.pth`` (``alex``),
   ``squeezenet1_1-b8a52dc0.pth`` (``squeeze``).

To enable LPIPS on an offline machine, copy the file there, e.g.
``cp vgg16-397923af.pth ~/.cache/torch/hub/checkpoints/`` or
``export CMRAUDIT_LPIPS_WEIGHTS=/path/to/vgg16-397923af.pth``.
Otherwise :func:`find_lpips_weights` returns ``None`` with a reason and the metric is skipped.
Grey images are repeated to 3 channels; inputs stay in [-1, 1] as LPIPS expects.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, UsageError

BACKBONE_FILES = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
ENV_VAR = "CMRAUDIT_LPIPS_WEIGHTS"


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's own rule, without importing torch.hub side effects)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def find_lpips_weights(*, net: str = "vgg", weights: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """(path, "") when the backbone weights exist locally, else (None, reason)."""
    if net not in BACKBONE_FILES:
        raise UsageError(f"LPIPS net {net!r} is unknown; expected one of {', '.join(BACKBONE_FILES)}")
    given = weights or os.environ.get(ENV_VAR)
    if given:
        p = Path(given).expanduser()
        if p.is_file():
            return p, ""
        return None, f"LPIPS backbone weights not found at {p} (from {'weights=' if weights else ENV_VAR})"
    p = hub_checkpoint_dir() / BACKBONE_FILES[net]
    if p.is_file():
        return p, ""
    return None, (
        f"LPIPS needs the torchvision {net} backbone weights ({BACKBONE_FILES[net]}) locally and they are absent "
        f"from {p.parent}; set {ENV_VAR}=/path/to/{BACKBONE_FILES[net]} to enable it (no download is attempted)"
    )


def load_lpips(path: str | os.PathLike, *, net: str = "vgg"):
    """An ``lpips.LPIPS`` model whose backbone is loaded from the local state dict ``path``."""
    import contextlib
    import io
    import warnings

    import lpips
    import torch
    import torchvision

    ctor = {
        "vgg": torchvision.models.vgg16,
        "alex": torchvision.models.alexnet,
        "squeeze": torchvision.models.squeezenet1_1,
    }[net]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        backbone = ctor(weights=None)
        backbone.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 — any failure means the file is not the expected backbone
        raise CheckpointError(f"{path}: not a torchvision {net} state dict usable as the LPIPS backbone ({e})") from e
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lpips passes torchvision's deprecated ``pretrained=False``
        model = lpips.LPIPS(
            net=net, pretrained=True, pnet_rand=True, verbose=False
        )  # heads from the wheel, trunk random …
    feats = backbone.features
    for sl in [getattr(model.net, f"slice{i}") for i in range(1, model.net.N_slices + 1)]:
        for name, mod in sl.named_children():  # … then the trunk is overwritten with the local weights
            mod.load_state_dict(feats[int(name)].state_dict())
    return model.eval()


def compute_lpips(x: np.ndarray, y: np.ndarray, *, model, batch: int = 32) -> np.ndarray:
    """Per-slice LPIPS distance (≥ 0; 0 = identical) for grey stacks [N, H, W] in [-1, 1]."""
    import torch

    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.shape != y.shape:
        raise UsageError(f"LPIPS needs stacks of one shape, got {x.shape} and {y.shape}")
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            a = torch.from_numpy(x[s : s + batch])[:, None].repeat(1, 3, 1, 1)
            b = torch.from_numpy(y[s : s + batch])[:, None].repeat(1, 3, 1, 1)
            out.append(model(a, b).flatten().numpy())
    return np.concatenate(out) if out else np.empty(0)
