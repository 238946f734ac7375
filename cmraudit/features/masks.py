"""The label-map feature space: soft one-hot of the three structures (RV, MYO, LV; background implied),
area-downsampled to ``size``², flattened. At native resolution (``size=0``) the squared Euclidean distance is the
number of pixels whose label differs (×2 when both labels are structures). Used by the mask copy search
(``cmraudit.privacy.masks``) and the ``copycat`` reference generator (``cmraudit.generators.reference``).
"""
from __future__ import annotations

import numpy as np


def mask_features(masks: np.ndarray, *, size: int = 16, batch: int = 4096) -> np.ndarray:
    """[N, 3·size²] float32 soft one-hot (RV, MYO, LV)."""
    n, h, w = masks.shape
    out = []
    for s in range(0, n, batch):
        m = np.asarray(masks[s : s + batch])
        if size and size < h and h % size == 0 and w % size == 0:
            # block means of 0/1 values are counts / block area: count in integers (exact in any order, so the
            # contiguous rows first, unlike pixel.block_mean, which must keep numpy's float order), then divide
            fy, fx = h // size, w // size
            oh = np.empty((len(m), 3, size, size), np.float32)
            for i, c in enumerate((1, 2, 3)):
                e = (m == c).view(np.uint8).reshape(len(m), size, fy, w)
                rows = e[:, :, 0].astype(np.int32)  # [b, size, W]; the block's rows added slice by slice
                for j in range(1, fy):
                    rows += e[:, :, j]
                rows = rows.reshape(len(m), size, size, fx)
                cnt = rows[..., 0].copy()
                for j in range(1, fx):
                    cnt += rows[..., j]
                oh[:, i] = cnt / np.float32(fy * fx)
        else:
            oh = np.stack([(m == c) for c in (1, 2, 3)], 1).astype(np.float32)  # [b,3,H,W]
        out.append(oh.reshape(len(m), -1))
    return np.concatenate(out) if out else np.zeros((0, 3 * size * size), np.float32)
