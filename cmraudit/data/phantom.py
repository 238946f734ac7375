"""The embedded phantom: procedural short-axis cine-MRI slices with exact masks (docs/design.md § 4).

It is the only data CI ever has, so it must (a) be segmentable (LV / MYO / RV learnable from
the images) and (b) make subjects distinguishable, so that a generator that memorises a
patient can be caught. Everything is drawn from ``seed``; subject ``i`` depends only on
``(seed, i)``, so ``subjects=10`` is a prefix of ``subjects=60`` at the same size and slices.

Geometry is modelled in millimetres (field of view ``fov_mm``) and rasterised on a pixel
grid; masks use ACDC numbering (1 RV, 2 MYO, 3 LV; papillary muscles belong to LV).
Images are magnitude images (Rician noise) normalised per slice like the preprocessing:
clip to the 1st–99.9th percentile, scale to [-1, 1]. See docs/phantom.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UsageError
from ._raster import (
    _blur,
    _ellipse_sd,
    _largest_component,
    _norm,
    _paint,
    _smooth_fields,
    _tex,
)
from .dataset import ALL_STRUCTURES, Dataset

PHANTOM_VERSION = "1.0"
GENERATOR_NAME = "cmraudit.phantom"
PHASES = ("ED", "ES")


@dataclass(frozen=True)
class VendorProfile:
    """Scanner appearance. ``gamma`` bends the contrast curve (signal ** gamma), ``snr`` is
    blood signal over noise sigma, ``blur_mm`` the Gaussian point-spread sigma in mm,
    ``bias`` the strength of the smooth multiplicative bias field (log-scale amplitude),
    the ``*_gain`` factors scale tissue signals before the contrast curve."""

    gamma: float
    snr: float
    blur_mm: float
    bias: float
    myo_gain: float = 1.0
    fat_gain: float = 1.0
    tissue_gain: float = 1.0


VENDOR_PROFILES: dict[str, VendorProfile] = {
    "A": VendorProfile(gamma=1.00, snr=30.0, blur_mm=0.6, bias=0.15),
    "B": VendorProfile(gamma=0.80, snr=20.0, blur_mm=0.9, bias=0.25, myo_gain=1.15, fat_gain=0.9),
    "C": VendorProfile(gamma=1.20, snr=15.0, blur_mm=1.2, bias=0.30, tissue_gain=1.15),
    "D": VendorProfile(gamma=1.50, snr=35.0, blur_mm=0.4, bias=0.10, myo_gain=0.85, fat_gain=1.1),
}

# Base signals (arbitrary units, blood ~ 0.9) of a balanced-SSFP-like contrast.
_AIR, _LUNG, _MYO, _MUSCLE, _LIVER, _TISSUE, _FAT, _BLOOD = 0.0, 0.05, 0.24, 0.28, 0.40, 0.42, 0.82, 0.92


@dataclass(frozen=True)
class PhantomConfig:
    """``subjects`` patients × ``phases`` × ``slices`` short-axis slices of ``size``² pixels.

    ``fov_mm`` is the field of view in mm (pixel spacing = fov_mm / size; 160 mm = a 128-px
    crop at 1.25 mm). Slice index 0 is basal, ``slices - 1`` apical. Vendors are assigned to
    subjects in turn (subject i gets ``vendors[i % len(vendors)]``)."""

    subjects: int = 60
    slices: int = 8
    size: int = 64
    phases: tuple[str, ...] = PHASES
    vendors: tuple[str, ...] = ("A", "B", "C", "D")
    fov_mm: float = 160.0

    def validate(self) -> None:
        problems = []
        if int(self.subjects) < 1:
            problems.append(f"subjects must be >= 1 (got {self.subjects})")
        if int(self.slices) < 1:
            problems.append(f"slices must be >= 1 (got {self.slices})")
        if int(self.size) < 16:
            problems.append(f"size must be >= 16 pixels (got {self.size})")
        if not self.fov_mm > 0:
            problems.append(f"fov_mm must be > 0 (got {self.fov_mm})")
        bad = [p for p in self.phases if p not in PHASES]
        if not self.phases or bad or len(set(self.phases)) != len(self.phases):
            problems.append(f"phases must be distinct values from {PHASES} (got {tuple(self.phases)})")
        badv = [v for v in self.vendors if v not in VENDOR_PROFILES]
        if not self.vendors or badv:
            problems.append(f"vendors must be from {tuple(VENDOR_PROFILES)} (got {tuple(self.vendors)})")
        if problems:
            raise UsageError("PhantomConfig: " + "; ".join(problems) + "; fix the phantom options")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["phases"], d["vendors"] = list(self.phases), list(self.vendors)
        return d


def _subject_params(rng: np.random.Generator) -> dict:
    """Per-subject anatomy (mm, rad). Drawn in a fixed order: never reorder (reproducibility).

    Scalars are Python floats and vectors float32, so rendering stays in float32."""
    u, n = rng.uniform, rng.normal
    p = {
        "r_endo": u(18.0, 28.0),  # LV cavity radius at the base, ED
        "wall": u(6.0, 11.0),  # myocardial wall thickness, ED
        "es_scale": u(0.58, 0.8),  # ES / ED cavity radius
        "apex_scale": u(0.32, 0.5),  # apical / basal cavity radius
        "endo_fourier": n(0.0, 0.045, 4),  # cos/sin amplitudes of modes 2 and 3
        "wall_fourier": n(0.0, 0.12, 2),
        "rv_angle": np.pi + n(0.25, 0.18),  # direction LV -> RV (image coords, y down: left and up)
        "rv_depth": u(14.0, 26.0),  # RV crescent thickness at the base, ED (mm)
        "rv_width": u(1.05, 1.4),  # RV half-width / epicardial radius
        "rv_es": u(0.6, 0.8),
        "rv_taper": u(0.45, 0.65),
        "rot": n(0.0, 0.2),  # heart rotation
        "pos": n(0.0, 4.0, 2) + np.array([12.0, 0.0]),  # LV centre (mm from image centre)
        "drift": n(0.0, 4.0, 2),  # base -> apex in-plane drift of the LV centre
        "es_shift": n(0.0, 1.2, 2),
        "pap_angles": np.array([0.9, -0.9]) + n(0.0, 0.2, 2),
        "pap_r": u(2.5, 4.5, 2),
        "fat_th": u(1.5, 5.0),  # epicardial fat (mm), modulated around the heart
        "fat_phase": u(-np.pi, np.pi),
        "body_c": n(0.0, 8.0, 2) + np.array([0.0, 85.0]),
        "body_ax": np.array([u(170.0, 230.0), u(145.0, 170.0)]),
        "subcut_fat": u(5.0, 20.0),
        "muscle_th": u(6.0, 14.0),
        "liver_c": n(0.0, 8.0, 2) + np.array([-45.0, 72.0]),
        "liver_ax": np.array([u(50.0, 75.0), u(32.0, 45.0)]),
        "liver_rot": n(-0.35, 0.15),
        "lung_l": np.concatenate([n(0.0, 6.0, 2) + np.array([78.0, -8.0]), [u(34.0, 45.0), u(65.0, 90.0)]]),
        "lung_r": np.concatenate([n(0.0, 6.0, 2) + np.array([-72.0, -42.0]), [u(26.0, 38.0), u(38.0, 55.0)]]),
        "aorta": np.concatenate([n(0.0, 5.0, 2) + np.array([38.0, 52.0]), [u(9.0, 13.0)]]),
        "gains": u(0.9, 1.1, 5),  # blood, myo, fat, tissue, liver
        "bias": n(0.0, 1.0, 5),
        # subject-specific blobs in the surroundings (vessels, fat, dark structures): x, y, r, signal
        "blobs": np.stack([u(-75.0, 75.0, 10), u(-75.0, 75.0, 10), u(1.5, 6.0, 10),
                           rng.choice([_FAT, _BLOOD * 0.85, _MUSCLE * 0.6, _LUNG, _LUNG], size=10)], axis=1),
    }
    return {k: np.asarray(v, np.float32) if isinstance(v, np.ndarray) else float(v) for k, v in p.items()}


def _render_subject(p: dict, cfg: PhantomConfig, vendor: str, tex_rng, noise_rng) -> tuple[np.ndarray, np.ndarray]:
    """All slices of one subject, ordered phase-major: images float32, masks uint8 [P*S, H, W]."""
    size, S = int(cfg.size), int(cfg.slices)
    px = float(cfg.fov_mm) / size
    vp = VENDOR_PROFILES[vendor]
    c1 = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * np.float32(px)
    Y, X = c1[:, None], c1[None, :]  # mm from the image centre, y down
    z = np.linspace(0.0, 1.0, S, dtype=np.float32) if S > 1 else np.array([0.4], np.float32)
    es = np.array([ph == "ES" for ph in cfg.phases])
    zb = np.tile(z, len(es))[:, None, None]  # [B,1,1]
    esb = np.repeat(es, S)[:, None, None]
    B = len(zb)
    f = np.float32

    # textures shared by the subject, varying smoothly from base to apex
    phi = zb * f(np.pi / 2 * 0.8)
    low = _smooth_fields(tex_rng, 2, size, 10.0 / px)
    fine = _smooth_fields(tex_rng, 2, size, max(0.6, 1.2 / px))
    low = np.cos(phi) * low[0] + np.sin(phi) * low[1]
    fine = np.cos(phi) * fine[0] + np.sin(phi) * fine[1]
    g_blood, g_myo, g_fat, g_tis, g_liv = (float(g) for g in p["gains"])
    fat_v = _FAT * g_fat * vp.fat_gain
    myo_v = _MYO * g_myo * vp.myo_gain

    # ---- surroundings: body-fixed 2-D shapes, painted as signal = v0 + v1·low + v2·fine
    sur = np.zeros((3, size, size), np.float32)  # air
    bc, ba = p["body_c"], p["body_ax"]
    body_sd = _ellipse_sd(X - bc[0], Y - bc[1], ba[0], ba[1])
    tis = _TISSUE * g_tis * vp.tissue_gain
    _paint(sur, body_sd, _tex(fat_v, 0.06), px)
    _paint(sur, body_sd + p["subcut_fat"], _tex(_MUSCLE, 0.08), px)
    _paint(sur, body_sd + (p["subcut_fat"] + p["muscle_th"]), _tex(tis, 0.2, 0.05), px)
    for bx, by, br, bv in p["blobs"]:
        _paint(sur, _norm(X - bx, Y - by) - br, _tex(float(bv), 0.05), px)
    cr, sr = np.cos(p["liver_rot"]), np.sin(p["liver_rot"])
    lx, ly = X - p["liver_c"][0], Y - p["liver_c"][1]
    la = p["liver_ax"]
    _paint(sur, _ellipse_sd(cr * lx + sr * ly, -sr * lx + cr * ly, la[0], la[1]),
           _tex(_LIVER * g_liv * vp.tissue_gain, 0.08, 0.04), px)
    for lung in (p["lung_l"], p["lung_r"]):
        _paint(sur, _ellipse_sd(X - lung[0], Y - lung[1], lung[2], lung[3]), _tex(_LUNG, 0.5), px)
    ao = p["aorta"]
    _paint(sur, _norm(X - ao[0], Y - ao[1]) - ao[2], _tex(_BLOOD * 0.9 * g_blood), px)
    img = sur[0] + sur[1] * low + sur[2] * fine  # [B, H, W]

    # ---- heart (per slice / phase); angles via cos/sin of the polar angle, no trig per pixel
    cx = p["pos"][0] + p["drift"][0] * zb + esb * p["es_shift"][0]
    cy = p["pos"][1] + p["drift"][1] * zb + esb * p["es_shift"][1]
    dx, dy = X - cx, Y - cy
    rho = _norm(dx, dy)
    inv = 1.0 / np.maximum(rho, f(1e-3))
    cr, sr = f(np.cos(p["rot"])), f(np.sin(p["rot"]))
    ct = (dx * cr + dy * sr) * inv  # cos, sin of the angle in the heart frame
    st = (dy * cr - dx * sr) * inv
    c2, s2 = ct * ct - st * st, 2 * ct * st
    c3, s3 = ct * (4 * ct * ct - 3), st * (3 - 4 * st * st)
    taper = 1.0 - (1.0 - p["apex_scale"]) * zb**1.4
    r_ed = p["r_endo"] * taper
    w_ed = p["wall"] * (1.0 - 0.2 * zb)
    r_es = r_ed * p["es_scale"]
    w_es = np.sqrt(r_es**2 + (r_ed + w_ed) ** 2 - r_ed**2) - r_es  # myocardial area conserved
    r0 = np.where(esb, r_es, r_ed)
    w0 = np.where(esb, w_es, w_ed)
    ef, wf = p["endo_fourier"], p["wall_fourier"]
    r_endo = r0 * (1 + ef[0] * c2 + ef[1] * s2 + ef[2] * c3 + ef[3] * s3)
    r_epi = r_endo + w0 * (1 + wf[0] * c2 + wf[1] * s2)
    sd_endo, sd_epi = rho - r_endo, rho - r_epi
    R_epi = r0 + w0

    # RV: ellipse beside the LV minus the epicardial disc -> crescent sharing the septum
    al = p["rv_angle"] + p["rot"]
    ux, uy = f(np.cos(al)), f(np.sin(al))
    rv_scale = (1.0 - p["rv_taper"] * zb) * np.where(esb, f(p["rv_es"]), f(1.0))
    depth = np.maximum(p["rv_depth"] * rv_scale, f(1.6 * px))
    d = 0.5 * R_epi
    s = dx * ux + dy * uy - d
    t = dy * ux - dx * uy
    sd_rv = _ellipse_sd(s, t, 0.5 * R_epi + depth, R_epi * p["rv_width"] * np.sqrt(rv_scale) + px)
    rv_wall = max(2.5, 0.8 * px)
    sd_heart = np.minimum(sd_epi, sd_rv - rv_wall)
    cf = ct * f(np.cos(p["fat_phase"])) + st * f(np.sin(p["fat_phase"]))
    fat_th = 1.5 + p["fat_th"] * (0.2 + 1.5 * np.maximum(cf, 0) ** 2)
    _paint(img, sd_heart - fat_th, fat_v * (1 + 0.1 * low), px)
    _paint(img, sd_heart, myo_v * (1 + 0.1 * fine), px)
    blood = _BLOOD * g_blood * (1 + 0.04 * low + 0.02 * fine)
    _paint(img, np.maximum(sd_rv, -sd_epi), blood, px)
    _paint(img, sd_epi, myo_v * (1 + 0.12 * fine), px)
    _paint(img, sd_endo, blood, px)
    on = np.flatnonzero(zb.ravel() < 0.8)  # papillary muscles: basal and mid slices
    if on.size:
        sd_p = None
        for k in range(2):
            pa = al + np.pi + float(p["pap_angles"][k])
            pr = p["pap_r"][k] * np.where(esb[on], f(1.2), f(1.0)) * (1.0 - 0.4 * zb[on])
            pd = r0[on] - 0.9 * pr
            sd_k = _norm(dx[on] - pd * f(np.cos(pa)), dy[on] - pd * f(np.sin(pa))) - pr
            sd_p = sd_k if sd_p is None else np.minimum(sd_p, sd_k)
        sub = img[on]
        _paint(sub, sd_p, myo_v * 1.1, px)
        img[on] = sub

    # ---- masks (hard thresholds of the same shapes) and MYO-ring closure
    lv = sd_endo < 0
    myo = (sd_epi < 0) & ~lv
    rv = (sd_rv < 0) & (sd_epi >= 0)
    ring = np.zeros_like(lv)
    ring[:, 1:, :] |= lv[:, :-1, :]
    ring[:, :-1, :] |= lv[:, 1:, :]
    ring[:, :, 1:] |= lv[:, :, :-1]
    ring[:, :, :-1] |= lv[:, :, 1:]
    ring2 = ring.copy()
    ring2[:, :, 1:] |= ring[:, :, :-1]
    ring2[:, :, :-1] |= ring[:, :, 1:]
    myo |= ring2 & ~lv  # every 8-neighbour of LV is LV or MYO at any resolution
    mask = np.zeros((B, size, size), np.uint8)
    mask[_largest_component(rv & ~myo)] = 1
    mask[myo] = 2
    mask[lv] = 3

    # ---- scanner: bias, contrast curve, blur, Rician noise, per-slice normalisation
    xn, yn = X / (cfg.fov_mm / 2), Y / (cfg.fov_mm / 2)
    b = p["bias"]
    logb = vp.bias * (b[0] * xn + b[1] * yn + 0.5 * b[2] * xn**2 + 0.5 * b[3] * yn**2 + 0.5 * b[4] * xn * yn)
    img = np.maximum(img, 0.0) * np.exp(logb)
    img = img ** np.float32(vp.gamma)
    img = _blur(img, vp.blur_mm / px)
    sigma = np.float32((_BLOOD**vp.gamma) / vp.snr)
    n1 = noise_rng.standard_normal(img.shape, dtype=np.float32)
    n2 = noise_rng.standard_normal(img.shape, dtype=np.float32)
    img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)
    lo, hi = np.percentile(img.reshape(B, -1)[:, :: 1 + (size * size) // 8192], [1.0, 99.9], axis=1)
    lo = lo.astype(np.float32)[:, None, None]
    hi = np.maximum(hi, lo[:, 0, 0] + 1e-6).astype(np.float32)[:, None, None]
    img = (np.clip(img, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0
    return img.astype(np.float32), mask


def make_phantom(config: PhantomConfig | None = None, *, seed: int, progress: bool = False) -> Dataset:
    """Generate the phantom as a :class:`Dataset` (deterministic by ``seed``).

    Rows are ordered subject-major, then phase (``config.phases``), then slice (base→apex).
    Patient ids are ``phantom-0001``…; ``spacing_mm`` = ``fov_mm / size`` in both directions.
    """
    cfg = config or PhantomConfig()
    cfg.validate()
    try:
        seed = int(seed)
    except (TypeError, ValueError) as e:
        raise UsageError(f"make_phantom: seed must be an integer (got {seed!r})") from e
    n_sub, S, P, size = int(cfg.subjects), int(cfg.slices), len(cfg.phases), int(cfg.size)
    per = S * P
    images = np.empty((n_sub * per, size, size), np.float32)
    masks = np.empty((n_sub * per, size, size), np.uint8)
    children = np.random.SeedSequence(seed).spawn(n_sub)
    it = range(n_sub)
    if progress:
        from rich.progress import track

        it = track(it, description="phantom", total=n_sub)
    vendors = []
    for i in it:
        anat, tex, noise = (np.random.default_rng(s) for s in children[i].spawn(3))
        vendor = cfg.vendors[i % len(cfg.vendors)]
        vendors.append(vendor)
        im, mk = _render_subject(_subject_params(anat), cfg, vendor, tex, noise)
        images[i * per : (i + 1) * per] = im
        masks[i * per : (i + 1) * per] = mk
    pid = np.repeat(np.array([f"phantom-{i + 1:04d}" for i in range(n_sub)], dtype=object), per)
    px = cfg.fov_mm / size
    return Dataset(
        images=images,
        masks=masks,
        patient_id=pid,
        vendor=np.repeat(np.array(vendors, dtype=object), per),
        frame=np.tile(np.repeat(np.array(cfg.phases, dtype=object), S), n_sub),
        slice_index=np.tile(np.arange(S, dtype=np.int64), P * n_sub),
        source=np.full(n_sub * per, "phantom", dtype=object),
        annotated=np.full(n_sub * per, ALL_STRUCTURES, np.uint8),
        spacing_mm=np.full((n_sub * per, 2), px, np.float64),
        meta={
            "generator": GENERATOR_NAME,
            "phantom_version": PHANTOM_VERSION,
            "config": cfg.to_dict(),
            "seed": seed,
            "provenance": f"{GENERATOR_NAME} {PHANTOM_VERSION} (seed {seed})",
        },
    )
