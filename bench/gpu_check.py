"""GPU check: the `paper` preset on one CUDA device (AMP), sampling, a DP-SGD step, and the quick run end to end.

Run where a GPU is present (``bench/gpu_check.sh`` installs what the machine lacks first)::

    python bench/gpu_check.py --out DIR [--steps 300] [--n-sample 16]

Each part runs on its own and is timed with CUDA synchronisation; a part that fails is recorded with its error
and the rest go on. Writes ``DIR/gpu_check.json`` and prints a markdown table for docs/benchmarks.md.

Parts:

* ``paper_fit``: DDPM plugin, ``paper`` preset (128², mask and image UNets (64, 128, 256, 512), attention at
  the two deepest levels, 2 res blocks, batch 8), ``--steps`` steps of each stage with AMP (float16 autocast
  + loss scaling, the training loop's CUDA default) on phantom slices; images per second per stage.
* ``paper_fit_b32``: the image stage alone at batch 32, to show how far batch 8 is from filling the card.
* ``paper_sample``: ``--n-sample`` masks and images with the preset's sampler (DDPM, 1000 steps per stage),
  then DDIM-50 for comparison.
* ``paper_dp``: the same fit under patient-level DP-SGD (Opacus, ε = 8) for ``--dp-steps`` steps: seconds
  per step against the non-private step.
* ``quick_sweep``: quick-preset image-model variants (ε vs v-prediction, Min-SNR-γ, steps) scored by the Dice of
  a segmenter trained on their synthetic slices alone (the quick run's utility measure); see ``SWEEP``.
* ``quick_run``: ``cmraudit run --generator ddpm`` (quick preset) with ``--device cuda``, wall time per stage.
* ``cuda_roundtrip``: a micro fit on CUDA, save, load on the CPU, sample: the saved model is device-free.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _phantom(size: int, subjects: int, seed: int = 0):
    from cmraudit.data.phantom import PhantomConfig, make_phantom

    return make_phantom(PhantomConfig(subjects=subjects, size=size), seed=seed)


def _stage_rate(summary: dict, batch: int) -> dict:
    steps, secs = int(summary["steps"]), float(summary["time_s"])
    return {"steps": steps, "time_s": round(secs, 2), "img_per_s": round(steps * batch / secs, 1)}


def part_paper_fit(args, out: dict) -> None:
    from cmraudit_ddpm import DDPMGenerator

    data = _phantom(128, args.subjects)
    gen = DDPMGenerator.from_preset("paper", steps=args.steps, mask_steps=args.steps, device=args.device,
                                    checkpoint_every=10**9)
    _reset_peak()
    t0 = time.perf_counter()
    gen.fit(data, seed=0, progress=False)
    _sync()
    out["paper_fit"] = {
        "slices": len(data), "batch": gen.batch_size, "wall_s": round(time.perf_counter() - t0, 1),
        "mask": _stage_rate(gen.training_["mask"], gen.batch_size),
        "image": _stage_rate(gen.training_["image"], gen.batch_size),
        "final_loss_image": float(np.mean(gen.training_["image"]["losses"][-20:])),
        "peak_gpu_mem_gib": _peak_gib(),
        "device": gen.training_["device"],
    }
    args._fitted = gen


def part_paper_fit_b32(args, out: dict) -> None:
    from cmraudit_ddpm import DDPMGenerator

    data = _phantom(128, args.subjects)
    gen = DDPMGenerator.from_preset("paper", steps=args.steps, mask_steps=1, batch_size=32, device=args.device,
                                    checkpoint_every=10**9)
    gen.fit(data, seed=0, progress=False)
    _sync()
    out["paper_fit_b32"] = {"image": _stage_rate(gen.training_["image"], 32)}


def part_paper_sample(args, out: dict) -> None:
    gen = getattr(args, "_fitted", None)
    if gen is None:
        raise RuntimeError("paper_fit did not run")
    res = {}
    if args.sample_steps:  # dry run: DDIM with few steps (DDPM always takes all 1000)
        gen.set_params(sampler="ddim", sampling_steps=args.sample_steps, mask_sampling_steps=args.sample_steps)
    for label, kw in (("preset_sampler", {}), ("ddim50", {"sampler": "ddim", "sampling_steps": 50,
                                                    "mask_sampling_steps": 50})):
        if kw:
            gen.set_params(**kw)
        _sync()
        t0 = time.perf_counter()
        ds = gen.sample(n=args.n_sample, seed=1)
        _sync()
        secs = time.perf_counter() - t0
        res[label] = {"n": len(ds), "time_s": round(secs, 2), "img_per_s": round(len(ds) / secs, 2),
                      "finite": bool(np.isfinite(np.asarray(ds.images)).all())}
    out["paper_sample"] = res


def part_paper_dp(args, out: dict) -> None:
    from cmraudit_ddpm import DDPMGenerator

    from cmraudit.dp import DPConfig

    data = _phantom(128, args.subjects)
    gen = DDPMGenerator.from_preset("paper", steps=args.dp_steps, mask_steps=args.dp_steps, device=args.device,
                                    checkpoint_every=10**9)
    _reset_peak()
    gen.fit(data, seed=0, progress=False, dp=DPConfig(epsilon=8.0, delta=1e-3))
    _sync()
    res = {}
    for stage in ("mask", "image"):
        s = gen.training_[stage]
        res[stage] = {"steps": int(s["steps"]), "time_s": round(float(s["time_s"]), 2),
                      "s_per_step": round(float(s["time_s"]) / int(s["steps"]), 3)}
    dp_ = gen.dp_ if isinstance(gen.dp_, dict) or gen.dp_ is None else gen.dp_.to_dict()
    res["epsilon"] = None if dp_ is None else dp_.get("epsilon")
    res["peak_gpu_mem_gib"] = _peak_gib()
    out["paper_dp"] = res


def part_quick_run(args, out: dict) -> None:
    with tempfile.TemporaryDirectory() as td:
        run_dir = Path(td) / "run"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), str(ROOT / "plugins")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "cmraudit", "--quiet", "run", "--generator", "ddpm", "--out",
                            str(run_dir), "--device", args.device], env=env, capture_output=True, text=True,
                           timeout=args.quick_timeout)
        wall = time.perf_counter() - t0
        res = {"rc": p.returncode, "wall_s": round(wall, 1), "stderr_tail": p.stderr[-1500:]}
        rep = run_dir / "report.json"
        if rep.exists():
            r = json.loads(rep.read_text())
            res["stage_times_s"] = (r.get("run") or {}).get("timings_s")
            (Path(args.out) / "quick_report.json").write_text(rep.read_text())
        out["quick_run"] = res


SWEEP = {  # quick-preset image-model variants (issue 18: does a better objective reach Dice >= 0.85?)
    "eps400": {},
    "v_minsnr400": {"prediction_type": "v_prediction", "snr_gamma": 5.0},
    "eps_minsnr400": {"snr_gamma": 5.0},
    "v_minsnr800": {"prediction_type": "v_prediction", "snr_gamma": 5.0, "steps": 800},
    "eps800": {"steps": 800},
}


def _dice(block: dict) -> dict:
    d = block.get("dice", block)
    return {k: (round(v["value"], 3) if isinstance(v, dict) and "value" in v else v) for k, v in d.items()}


def _syn_dice(train, syn, test, device) -> dict:
    from cmraudit.utility.evaluate import evaluate_utility

    r = evaluate_utility(train=train, synthetic=syn, test=test, seed=0, preset="quick", regimes=("synthetic",),
                         cross_vendor=False, progress=False, device=device)
    return _dice(r.regimes["synthetic"])


def part_quick_sweep(args, out: dict) -> None:
    """The quick run's data, split and seeds; per variant: fit, 96 synthetic slices (DDIM-25 images), a segmenter
    trained on them alone, Dice on the real test patients. ``+ddim10``: the same model sampled with 10 image steps;
    ``+real_masks``: images generated for 96 real training masks (the image model alone, no mask model)."""
    from cmraudit_ddpm import DDPMGenerator

    from cmraudit.data.splits import split_patients
    from cmraudit.pipeline import load_data
    from cmraudit.run_parts import _synthetic_for_spacing

    ds, _ = load_data(None, preset="quick", seed=0)
    parts = split_patients(ds, seed=0).apply(ds)
    train, test = parts["train"], parts["test"]
    res = out.setdefault("quick_sweep", {})
    variants = json.loads(args.variants) if args.variants else SWEEP
    for name, params in variants.items():
        if time.perf_counter() > args._deadline - 60:
            res[name] = "skipped: deadline"
            continue
        t0 = time.perf_counter()
        dry = {"steps": args.sweep_steps, "mask_steps": args.sweep_steps} if args.sweep_steps else {}
        gen = DDPMGenerator.from_preset("quick", device=args.device, **{**params, **dry})
        gen.fit(train, seed=0, progress=False)
        fit_s = time.perf_counter() - t0
        syn = _synthetic_for_spacing(gen.sample(n=96, seed=1), train)
        row = {"fit_s": round(fit_s, 1), "dice": _syn_dice(train, syn, test, args.device)}
        if name in ("eps400", "v_minsnr400") and not args.variants and time.perf_counter() < args._deadline - 60:
            rows = np.sort(np.random.default_rng(2).choice(len(train), 96, replace=False))
            paired = _synthetic_for_spacing(gen.sample(masks=np.asarray(train.masks[rows]), seed=2), train)
            row["dice+real_masks"] = _syn_dice(train, paired, test, args.device)
            gen.set_params(sampling_steps=10)
            syn10 = _synthetic_for_spacing(gen.sample(n=96, seed=1), train)
            row["dice+ddim10"] = _syn_dice(train, syn10, test, args.device)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        res[name] = row
        print(f"  sweep {name}: {json.dumps(row)}", flush=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(out, indent=2, default=str))


def part_cuda_roundtrip(args, out: dict) -> None:
    from cmraudit_ddpm import DDPMGenerator

    data = _phantom(32, 4)
    gen = DDPMGenerator.from_preset("micro", device=args.device, image_size=32)
    gen.fit(data, seed=0, progress=False)
    with tempfile.TemporaryDirectory() as td:
        gen.save(Path(td) / "m")
        back = DDPMGenerator.load(Path(td) / "m")
        back.set_params(device="cpu")
        a = back.sample(n=4, seed=3)
    out["cuda_roundtrip"] = {"fit_device": gen.training_["device"], "cpu_samples": len(a),
                             "finite": bool(np.isfinite(np.asarray(a.images)).all())}


PARTS = {
    "cuda_roundtrip": part_cuda_roundtrip,
    "paper_fit": part_paper_fit,
    "paper_sample": part_paper_sample,
    "paper_fit_b32": part_paper_fit_b32,
    "paper_dp": part_paper_dp,
    "quick_sweep": part_quick_sweep,
    "quick_run": part_quick_run,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--dp-steps", type=int, default=20)
    ap.add_argument("--n-sample", type=int, default=16)
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--quick-timeout", type=int, default=240)
    ap.add_argument("--only", nargs="*", choices=list(PARTS))
    ap.add_argument("--deadline", type=float, default=420, help="seconds: parts not started by then are skipped")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself (use tiny settings)")
    ap.add_argument("--variants", default=None, help='quick_sweep variants as JSON {"name": {param: value}} '
                    "(default: SWEEP)")
    ap.add_argument("--sweep-steps", type=int, default=None, help="dry run: train each sweep variant this many steps")
    ap.add_argument("--sample-steps", type=int, default=None, help="override the preset's 1000 sampling steps")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.device != "cpu" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to check", file=sys.stderr)
        return 1
    out: dict = {
        "machine": {"gpu": torch.cuda.get_device_name(0) if args.device != "cpu" else "none (dry run)",
                    "torch": torch.__version__, "cuda": torch.version.cuda,
                    "python": platform.python_version(), "cpus": os.cpu_count(),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "errors": {},
    }
    args._deadline = time.perf_counter() + args.deadline
    for name, fn in PARTS.items():
        if args.only and name not in args.only:
            continue
        if time.perf_counter() > args._deadline:
            out["errors"][name] = "skipped: --deadline reached"
            continue
        t0 = time.perf_counter()
        try:
            fn(args, out)
            print(f"[{name}] {time.perf_counter() - t0:.1f} s: {json.dumps(out.get(name))}", flush=True)
        except Exception as e:  # noqa: BLE001 - record and go on: one broken part must not hide the others
            out["errors"][name] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"
            print(f"[{name}] FAILED after {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {e}", flush=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(out, indent=2, default=str))
    return 0 if not out["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
