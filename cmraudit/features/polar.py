"""Polar-harmonic feature space: weight-free, invariant to flips, rotations and (approximately) shifts.

Each slice is resampled on polar rings around its intensity centroid (weights (x + 1)^weight_power, so
the bright blood pools dominate; found by mean shift inside a disk of ``centroid_radius`` × size
starting at the image centre, so content at the borders never moves it); along each ring the magnitudes of the angular
Fourier
harmonics 0..``harmonics`` are kept. Rotating the slice about the centroid shifts each ring
circularly (magnitudes unchanged); a flip reverses the rings (magnitudes unchanged); a shift
moves the centroid with the content (borders aside). Features are the harmonic magnitudes
divided by the number of angular samples (unit: intensity on the [-1, 1] scale), flattened
over rings; Euclidean distance.
"""
from __future__ import annotations

import numpy as np

from .base import FeatureSpace


class PolarFeatures(FeatureSpace):
    name = "polar"
    invariances = ("flips", "rotations", "shifts")
    invariance = "exact flip and rotation invariance about the intensity centroid; shifts approximately"

    def __init__(self, *, rings: int = 16, angles: int = 64, harmonics: int = 8, max_radius: float = 0.3,
                 centroid_radius: float = 0.3, centroid_iters: int = 15, weight_power: float = 4.0):
        self.weight_power = weight_power
        self.centroid_radius = centroid_radius
        self.centroid_iters = centroid_iters
        self.rings = rings
        self.angles = angles
        self.harmonics = harmonics
        self.max_radius = max_radius

    def get_params(self) -> dict:
        return (
            dict(vars(self))
            if not hasattr(self, "fitted_")
            else {k: v for k, v in vars(self).items() if not k.endswith("_")}
        )

    def fit(self, pool=None, *, seed: int = 0, progress: bool = False) -> "PolarFeatures":
        self.fitted_ = True
        return self

    def transform_images(self, images: np.ndarray, *, batch: int = 1024) -> np.ndarray:
        from scipy import ndimage

        n, h, w = images.shape
        yy, xx = np.mgrid[:h, :w].astype(np.float64)
        r = (np.arange(1, self.rings + 1) / self.rings) * self.max_radius * min(h, w)
        th = np.arange(self.angles) * 2 * np.pi / self.angles
        dy = r[:, None] * np.sin(th)[None]
        dx = r[:, None] * np.cos(th)[None]
        out = np.empty((n, self.rings * (self.harmonics + 1)), np.float32)
        for s in range(0, n, batch):
            x = np.asarray(images[s : s + batch], dtype=np.float64)
            wgt = (x + 1.0) ** self.weight_power
            cy = np.full(len(x), (h - 1) / 2)
            cx = np.full(len(x), (w - 1) / 2)
            rad = self.centroid_radius * min(h, w)
            for _ in range(self.centroid_iters):  # mean shift inside a disk: borders never enter
                disk = ((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) <= rad * rad
                ww = wgt * disk
                tot = ww.sum((1, 2)) + 1e-9
                cy = (ww * yy).sum((1, 2)) / tot
                cx = (ww * xx).sum((1, 2)) / tot
            for i in range(len(x)):
                coords = np.stack([cy[i] + dy, cx[i] + dx])
                ring = ndimage.map_coordinates(x[i], coords.reshape(2, -1), order=1, mode="nearest").reshape(
                    self.rings, self.angles
                )
                mag = np.abs(np.fft.rfft(ring, axis=1))[:, : self.harmonics + 1] / self.angles
                out[s + i] = mag.reshape(-1)
        return out

    def transform(self, ds) -> np.ndarray:
        return self.transform_images(ds.images)
