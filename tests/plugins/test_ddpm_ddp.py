"""Multi-process training: torchrun --nproc_per_node 2 -m cmraudit fit … trains with DDP (gloo on CPU); only rank 0
writes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cmraudit.data.dataset import write_dataset
from cmraudit.generators.checkpoint import load_generator
from cmraudit.testing import make_toy_dataset


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    write_dataset(make_toy_dataset(n_patients=4, slices=2, size=32), tmp_path / "train")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cmraudit",
        "--quiet",
        "fit",
        "--generator",
        "ddpm",
        "--preset",
        "micro",
        "--device",
        "cpu",
        "--data",
        str(tmp_path / "train"),
        "--out",
        str(tmp_path / "model"),
        "--set",
        "steps=3",
        "--set",
        "mask_steps=2",
        "--set",
        "checkpoint_every=2",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["fitted"]["training_"]["world_size"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftover temporaries from rank 1
    gen = load_generator(tmp_path / "model")
    assert gen.sample(n=2, seed=0).images.shape == (2, 32, 32)
    assert np.isfinite(gen.training_["image"]["loss_end"])
