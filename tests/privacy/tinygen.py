"""A tiny torch generator with a loss, for shadow-model tests (no dependency on the DDPM plugin).

An MLP denoiser on 8×8-downsampled slices: x_t = sqrt(1-s_t)·x + sqrt(s_t)·ε with s_t = t/1000,
trained to predict ε. With few patients and many steps it memorises its training slices,
so its loss is lower on members than on non-members.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cmraudit.data.dataset import Dataset
from cmraudit.features.pixel import resize_images
from cmraudit.generators.base import GeneratorTags, check_is_fitted


class TinyGenerator:
    tags = GeneratorTags(conditional=False, two_stage=False, has_loss=True)
    audit_timesteps = (100, 300, 500)

    def __init__(self, *, steps: int = 300, hidden: int = 128, size: int = 8, lr: float = 3e-3):
        self.steps = steps
        self.hidden = hidden
        self.size = size
        self.lr = lr

    def get_params(self) -> dict:
        return {"steps": self.steps, "hidden": self.hidden, "size": self.size, "lr": self.lr}

    def _net(self):
        d = self.size * self.size
        return torch.nn.Sequential(
            torch.nn.Linear(d + 1, self.hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(self.hidden, self.hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(self.hidden, d),
        )

    def _x(self, images):
        return torch.from_numpy(resize_images(np.asarray(images, dtype=np.float32), self.size).reshape(len(images), -1))

    def fit(self, train: Dataset, *, seed: int, dp=None, progress: bool = True):
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = self._net()
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        x = self._x(train.images)
        for _ in range(self.steps):
            t = torch.randint(1, 1000, (len(x), 1), generator=g).float() / 1000
            eps = torch.randn(x.shape, generator=g)
            xt = (1 - t).sqrt() * x + t.sqrt() * eps
            loss = ((net(torch.cat([xt, t], 1)) - eps) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.net_ = net
        self.shape_ = tuple(train.shape)
        return self

    def loss(self, images, masks, *, t, seed: int = 0) -> np.ndarray:
        check_is_fitted(self, ("net_",))
        x = self._x(images)
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(x.shape, generator=g)
        tt = torch.full((len(x), 1), float(t) / 1000)
        with torch.no_grad():
            xt = (1 - tt).sqrt() * x + tt.sqrt() * eps
            return ((self.net_(torch.cat([xt, tt], 1)) - eps) ** 2).mean(1).numpy()

    def prediction_pair(self, images, masks, *, t, seed: int = 0):
        """(predicted noise, true noise) as [N, size, size] maps: the hook the legacy FCRE attack uses."""
        check_is_fitted(self, ("net_",))
        x = self._x(images)
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(x.shape, generator=g)
        tt = torch.full((len(x), 1), float(t) / 1000)
        with torch.no_grad():
            xt = (1 - tt).sqrt() * x + tt.sqrt() * eps
            pred = self.net_(torch.cat([xt, tt], 1))
        s = self.size
        return pred.reshape(-1, s, s).numpy(), eps.reshape(-1, s, s).numpy()

    def sample(self, *, masks=None, n=None, seed: int) -> Dataset:
        check_is_fitted(self, ("net_",))
        rng = np.random.default_rng(seed)
        n = n or 1
        h, w = self.shape_
        return Dataset(images=rng.uniform(-1, 1, (n, h, w)).astype(np.float32), masks=np.zeros((n, h, w), np.uint8),
                       patient_id=[f"syn-{i}" for i in range(n)])

    def save(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"params": self.get_params(), "shape": list(self.shape_)}))
        torch.save(self.net_.state_dict(), path / "weights.pt")

    @classmethod
    def load(cls, path):
        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        obj = cls(**cfg["params"])
        obj.net_ = obj._net()
        obj.net_.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
        obj.shape_ = tuple(cfg["shape"])
        return obj
