"""Mixed precision policy (cmraudit.device): bfloat16 autocast on CPUs with native bf16, float32 on request."""
import numpy as np
import pytest
import torch

from cmraudit.device import (
    ENV_CPU_PRECISION,
    autocast,
    autocast_dtype,
    cpu_has_native_bf16,
    cpu_precision,
    precision_name,
)
from cmraudit.errors import UsageError
from cmraudit.generators.training import TrainConfig, train_loop

CPU = torch.device("cpu")


def test_env_choice_and_auto(monkeypatch):
    monkeypatch.setenv(ENV_CPU_PRECISION, "fp32")
    assert cpu_precision() == "fp32" and autocast_dtype(CPU, training=True) is None
    assert precision_name(CPU) == "fp32"
    monkeypatch.setenv(ENV_CPU_PRECISION, "bf16")
    assert autocast_dtype(CPU, training=True) is torch.bfloat16 and precision_name(CPU) == "bf16-autocast"
    monkeypatch.setenv(ENV_CPU_PRECISION, "auto")
    assert cpu_precision() == ("bf16" if cpu_has_native_bf16() else "fp32")
    monkeypatch.setenv(ENV_CPU_PRECISION, "fp64")
    with pytest.raises(UsageError, match=ENV_CPU_PRECISION):
        cpu_precision()


def test_autocast_runs_convolutions_in_bf16(monkeypatch):
    conv = torch.nn.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 8, 8)
    monkeypatch.setenv(ENV_CPU_PRECISION, "bf16")
    with autocast(CPU, training=False):
        assert conv(x).dtype is torch.bfloat16
    monkeypatch.setenv(ENV_CPU_PRECISION, "fp32")
    with autocast(CPU, training=False):
        assert conv(x).dtype is torch.float32


class _Stop(Exception):
    pass


def _stop_at_8(step, loss):
    if step == 8:
        raise _Stop


def _fit(monkeypatch, prec: str, tmp_path=None, resume=False, callback=None):
    monkeypatch.setenv(ENV_CPU_PRECISION, prec)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
    data = torch.randn(16, 1, 12, 12)

    def step_loss(model, idx, gen):
        x = data[torch.as_tensor(idx)]
        noise = torch.randn(x.shape, generator=gen)
        return ((model(x + noise).float() - x) ** 2).mean()

    cfg = TrainConfig(steps=12, batch_size=4, lr=1e-2, warmup_steps=1, checkpoint_every=4)
    return train_loop(net, step_loss, n_items=16, config=cfg, seed=3, device=CPU, progress=False,
                      work_dir=tmp_path, resume=resume, callback=callback)


def test_bf16_training_tracks_fp32_and_resumes_exactly(monkeypatch, tmp_path):
    """bf16 autocast: losses close to float32's (not equal: the arithmetic differs), and an interrupted bf16 run
    resumed from its checkpoint ends with the same weights as an uninterrupted one."""
    a = _fit(monkeypatch, "fp32")
    b = _fit(monkeypatch, "bf16")
    assert not np.array_equal(a.losses, b.losses)
    np.testing.assert_allclose(a.losses, b.losses, rtol=0.05)
    full = _fit(monkeypatch, "bf16", tmp_path / "full")
    with pytest.raises(_Stop):  # a run stopped after 8 of 12 steps, right after its checkpoint at step 8
        _fit(monkeypatch, "bf16", tmp_path / "cut", callback=_stop_at_8)
    resumed = _fit(monkeypatch, "bf16", tmp_path / "cut", resume=True)
    for k, v in full.ema_state.items():
        torch.testing.assert_close(resumed.ema_state[k], v, rtol=0, atol=0)
