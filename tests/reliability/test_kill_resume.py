"""Issue 15: `cmraudit run` killed with SIGKILL in the middle of training, then `--resume`d, finishes with the
same weights as an uninterrupted fit of the same split (bit for bit) and leaves no temporary behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from cmraudit.generators.checkpoint import load_weights
from cmraudit.pipeline import fit_generator

from .conftest import cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SETS = ["--set", "mask_steps=60", "--set", "steps=6", "--set", "checkpoint_every=5"]


def test_kill_9_then_resume_is_bit_identical(assets, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "run",
        "-g",
        "ddpm",
        "--preset",
        "micro",
        "--data",
        str(assets["ph"]),
        "--out",
        str(run_dir),
        "--n-samples",
        "4",
        "--n-paired",
        "2",
        *SETS,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen(
        [sys.executable, "-m", "cmraudit", "-q", "--threads", "1", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = run_dir / "work" / "mask" / "train_state.pt"
    t0 = time.time()
    while not state.exists():
        assert p.poll() is None, "the run ended before it could be killed"
        assert time.time() - t0 < 180
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in the middle of the mask stage, maybe inside a checkpoint write
    p.kill()
    p.wait()
    assert not (run_dir / "report.json").exists()
    rc, out, err = cli([*argv, "--resume"], capsys)
    assert rc == 0, err
    leftovers = [str(x) for x in run_dir.rglob(".*") if x.name != ".cmraudit-output"]
    assert leftovers == []
    ref = tmp_path / "ref"
    fit_generator(
        generator="ddpm",
        data=run_dir / "data" / "train",
        out=ref,
        preset="micro",
        seed=0,
        params={"mask_steps": 60, "steps": 6, "checkpoint_every": 5},
        progress=False,
    )
    for name in ("mask_model.safetensors", "image.safetensors"):
        a, b = load_weights(run_dir / "model" / name), load_weights(ref / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
