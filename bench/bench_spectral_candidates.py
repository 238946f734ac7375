"""How often the registered copy search's candidate generator (the spectral embedding) proposes a copy's source.

    python bench/bench_spectral_candidates.py [--sizes 500,2000,10000] [--per 300] [--sunnybrook DIR] [--no-record]

The registered search only aligns a synthetic slice with its ``k_candidates`` (10) nearest training slices in the
spectral embedding (cmraudit.features.spectral): a copy whose source is not among them cannot be found, whatever its
residual. Per base size N (the first N slices of a 64² phantom, seed 7) it plants ``per`` copies of random base slices
under every transform of cmraudit.data.copy_transforms and reports the share whose source ranks among the 1, 3 and 10
nearest, for the ring means (the spectrum's radial envelope) at full weight and at the default ``envelope_weight``.
``--sunnybrook``: the same on a prepared Sunnybrook import (every slice as the base). Writes its block into
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse

import numpy as np

from _record import machine, record

WEIGHTS = (1.0, 0.5)


def ranks(base: np.ndarray, per: int, seed: int, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each copy's source among its spectral neighbours (k ≥ 50: 50), transform of each copy)."""
    from cmraudit.data.copy_transforms import COPY_TRANSFORMS, plant_copies
    from cmraudit.features.neighbours import knn
    from cmraudit.features.spectral import SpectralFeatures

    rng = np.random.default_rng(seed)
    kinds = np.repeat(np.array(COPY_TRANSFORMS), per)
    src = rng.choice(len(base), len(kinds))
    copies = plant_copies(base, src, kinds, rng)
    sp = SpectralFeatures(envelope_weight=weight)
    idx = knn(sp.transform_images(copies), sp.transform_images(base), k=min(50, len(base))).indices
    hit = idx == src[:, None]
    return np.where(hit.any(1), hit.argmax(1), 50), kinds


def row(name: str, base: np.ndarray, per: int, seed: int, weight: float) -> str:
    from cmraudit.data.copy_transforms import COPY_TRANSFORMS

    r, kinds = ranks(base, per, seed, weight)
    worst = min(COPY_TRANSFORMS, key=lambda t: (np.mean(r[kinds == t] < 10), t))
    return (f"| {name} | {weight:g} | {np.mean(r < 1):.4f} | {np.mean(r < 3):.4f} | {np.mean(r < 10):.4f} | "
            f"{worst} {np.mean(r[kinds == worst] < 10):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,2000,10000")
    ap.add_argument("--per", type=int, default=300, help="copies per transform")
    ap.add_argument("--sunnybrook", default=None, help="prepared Sunnybrook dataset (cmraudit data import sunnybrook)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    from cmraudit.data.phantom import PhantomConfig, make_phantom

    state = machine()
    sizes = [int(s) for s in a.sizes.split(",")]
    imgs = np.asarray(make_phantom(PhantomConfig(subjects=(max(sizes) + 7) // 8, slices=8, size=64), seed=7).images)
    lines = ["| base | envelope weight | source ranked 1st | in top 3 | in top 10 | worst transform (top 10) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for n in sizes:
        for w in WEIGHTS:
            lines.append(row(f"phantom, {n} slices", imgs[:n], a.per, 1, w))
            print(lines[-1], flush=True)
    if a.sunnybrook:
        from cmraudit.data.dataset import read_dataset

        sb = np.asarray(read_dataset(a.sunnybrook).images)
        for w in WEIGHTS:
            lines.append(row(f"Sunnybrook, {len(sb)} slices", sb, 100 if a.per > 100 else a.per, 3, w))
            print(lines[-1], flush=True)
    body = "\n".join([f"- {a.per} copies per transform (11 transforms) of random base slices; {state}", "", *lines])
    if not a.no_record:
        record("spectral-candidates", "Candidates of the registered copy search (bench/bench_spectral_candidates.py)",
               body)


if __name__ == "__main__":
    main()
