"""Shared training loop: schedule, stateless batches, loss goes down, resume == uninterrupted."""
import math

import numpy as np
import pytest
import torch

from cmraudit.errors import CheckpointError, UsageError
from cmraudit.generators.training import TrainConfig, batch_indices, lr_factor, seeded, train_loop

X = torch.linspace(-1, 1, 64).reshape(64, 1)
Y = 3 * X - 0.5


def _model(seed=0):
    with seeded(seed):
        return torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _loss(model, idx, gen):
    i = torch.as_tensor(idx)
    noise = 0.01 * torch.randn(len(i), 1, generator=gen)
    return torch.nn.functional.mse_loss(model(X[i]), Y[i] + noise)


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, warmup=10, total=100) == pytest.approx(0.1)
    assert lr_factor(9, warmup=10, total=100) == pytest.approx(1.0)
    assert lr_factor(10, warmup=10, total=100) == pytest.approx(1.0)
    assert lr_factor(55, warmup=10, total=100) == pytest.approx(0.5)
    assert lr_factor(100, warmup=10, total=100) == pytest.approx(0.0, abs=1e-12)


def test_batches_are_epoch_permutations_and_stateless():
    n, b = 10, 4
    first_epoch = np.concatenate([batch_indices(n, step=s, batch_size=b, seed=1) for s in range(2)])
    assert len(set(first_epoch.tolist())) == 8  # no repeats within an epoch
    assert np.array_equal(
        batch_indices(n, step=5, batch_size=b, seed=1), batch_indices(n, step=5, batch_size=b, seed=1)
    )
    assert not np.array_equal(
        batch_indices(n, step=0, batch_size=b, seed=1), batch_indices(n, step=0, batch_size=b, seed=2)
    )
    assert len(batch_indices(3, step=0, batch_size=8, seed=0)) == 3


def test_total_steps_from_epochs():
    assert TrainConfig(steps=None, epochs=3, batch_size=4).total_steps(10) == 9
    assert TrainConfig(steps=7, epochs=3).total_steps(10) == 7


def test_loss_decreases_and_ema_returned():
    model = _model()
    res = train_loop(
        model,
        _loss,
        n_items=64,
        config=TrainConfig(steps=150, batch_size=16, lr=3e-2, warmup_steps=5, ema_decay=0.9),
        seed=0,
        device=torch.device("cpu"),
        progress=False,
    )
    assert np.mean(res.losses[-10:]) < 0.1 * np.mean(res.losses[:10])
    assert set(res.ema_state) == set(model.state_dict())
    assert not all(torch.equal(res.ema_state[k], model.state_dict()[k]) for k in res.ema_state)  # EMA differs from raw


class Interrupt(Exception):
    pass


def test_resume_reaches_the_same_weights(tmp_path):
    cfg = TrainConfig(steps=12, batch_size=8, lr=1e-2, warmup_steps=3, checkpoint_every=5, ema_decay=0.9)
    dev = torch.device("cpu")
    full = train_loop(_model(), _loss, n_items=64, config=cfg, seed=3, device=dev, progress=False)

    def stop_at_8(step, loss):
        if step == 8:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_loop(
            _model(),
            _loss,
            n_items=64,
            config=cfg,
            seed=3,
            device=dev,
            work_dir=tmp_path,
            progress=False,
            callback=stop_at_8,
        )
    resumed = train_loop(
        _model(seed=99),
        _loss,
        n_items=64,
        config=cfg,
        seed=3,
        device=dev,
        work_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert resumed.resumed_from == 5
    assert all(torch.equal(full.ema_state[k], resumed.ema_state[k]) for k in full.ema_state)
    assert resumed.losses == pytest.approx(full.losses)


def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=8, checkpoint_every=2)
    train_loop(
        _model(), _loss, n_items=64, config=cfg, seed=0, device=torch.device("cpu"), work_dir=tmp_path, progress=False
    )
    with pytest.raises(CheckpointError, match="seed"):
        train_loop(
            _model(),
            _loss,
            n_items=64,
            config=cfg,
            seed=1,
            device=torch.device("cpu"),
            work_dir=tmp_path,
            resume=True,
            progress=False,
        )


def test_bad_config_and_dp_hook():
    with pytest.raises(UsageError, match="batch_size"):
        train_loop(
            _model(),
            _loss,
            n_items=8,
            config=TrainConfig(batch_size=0),
            seed=0,
            device=torch.device("cpu"),
            progress=False,
        )
    from cmraudit.dp import DPConfig

    with pytest.raises(UsageError, match="patient id"):  # DP needs the sampling unit of every item
        train_loop(
            _model(),
            _loss,
            n_items=8,
            config=TrainConfig(steps=1),
            seed=0,
            device=torch.device("cpu"),
            progress=False,
            dp=DPConfig(epsilon=8.0, delta=1e-3),
        )


def test_nan_loss_is_a_clear_error():
    def bad(model, idx, gen):
        return model(X[torch.as_tensor(idx)]).sum() * math.nan

    with pytest.raises(UsageError, match="learning rate"):
        train_loop(
            _model(), bad, n_items=8, config=TrainConfig(steps=2), seed=0, device=torch.device("cpu"), progress=False
        )
