"""train_loop under patient-level DP-SGD: budget, one slice per patient per step, learning, exact resume."""

import numpy as np
import pytest
import torch

from cmraudit.errors import UsageError
from cmraudit.generators.training import TrainConfig, seeded, train_loop
from cmraudit.dp import DPConfig

X = torch.linspace(-1, 1, 64).reshape(64, 1)
Y = 3 * X - 0.5
PIDS = [f"p{i // 2:02d}" for i in range(64)]  # 32 patients × 2 slices
CFG = TrainConfig(steps=40, batch_size=8, lr=0.05, warmup_steps=0, ema_decay=0.0)


def _model(seed=0):
    with seeded(seed):
        return torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _loss(model, idx, gen):
    i = torch.as_tensor(idx)
    return torch.nn.functional.mse_loss(model(X[i]), Y[i])


def _eval(state):
    m = _model()
    m.load_state_dict(state)
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(m(X), Y))


def test_dp_loop_budget_unit_and_learning():
    seen = []

    def loss(model, idx, gen):
        seen.append([PIDS[i] for i in idx])
        return _loss(model, idx, gen)

    dp = DPConfig(epsilon=8.0, delta=1e-3)
    res = train_loop(_model(), loss, n_items=64, config=CFG, seed=0, device=torch.device("cpu"), progress=False,
                     dp=dp, patient_ids=PIDS, stage="image_model")
    b = res.dp
    assert b is not None and b.name == "image_model" and b.steps == CFG.steps
    assert 0 < b.epsilon <= 8.0 + 1e-6 and b.n_patients == 32 and b.sample_rate == pytest.approx(8 / 32)
    assert all(len(set(p)) == len(p) for p in seen), "a patient contributed two slices to one DP step"
    assert np.mean([len(p) for p in seen]) == pytest.approx(8, abs=3)  # Poisson: expected 8 patients per step
    assert res.to_dict()["dp"]["epsilon"] == pytest.approx(b.epsilon)
    assert _eval(res.ema_state) < 0.5 * _eval(_model().state_dict())  # learns despite clipping + noise


def test_dp_resume_equals_uninterrupted(tmp_path):
    dp = DPConfig(epsilon=8.0, delta=1e-3)
    cfg = TrainConfig(steps=10, batch_size=8, lr=0.05, warmup_steps=0, checkpoint_every=5)
    kw = dict(n_items=64, seed=3, device=torch.device("cpu"), progress=False, dp=dp, patient_ids=PIDS)
    full = train_loop(_model(), _loss, config=cfg, **kw)

    def stop(step, _):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_loop(_model(), _loss, config=cfg, work_dir=tmp_path, callback=stop, **kw)
    resumed = train_loop(_model(), _loss, config=cfg, work_dir=tmp_path, resume=True, **kw)
    assert resumed.resumed_from == 5 and resumed.dp.steps == 10
    assert resumed.dp.epsilon == pytest.approx(full.dp.epsilon)
    for k in full.ema_state:
        assert torch.equal(full.ema_state[k], resumed.ema_state[k]), k


def test_dp_resume_with_other_dp_options_is_refused(tmp_path):
    from cmraudit.errors import CheckpointError

    cfg = TrainConfig(steps=2, batch_size=8, checkpoint_every=1)
    kw = dict(n_items=64, seed=0, device=torch.device("cpu"), progress=False, patient_ids=PIDS, work_dir=tmp_path)
    train_loop(_model(), _loss, config=cfg, dp=DPConfig(epsilon=8.0, delta=1e-3), **kw)
    with pytest.raises(CheckpointError, match="DP options"):
        train_loop(_model(), _loss, config=cfg, dp=DPConfig(epsilon=4.0, delta=1e-3), resume=True, **kw)


def test_dp_needs_one_patient_id_per_item():
    with pytest.raises(UsageError, match="patient id"):
        train_loop(_model(), _loss, n_items=64, config=CFG, seed=0, device=torch.device("cpu"), progress=False,
                   dp=DPConfig(epsilon=8.0, delta=1e-3), patient_ids=PIDS[:10])
