"""RUN/logs/<stage>.csv from the shared training loop: columns, one row per step, grad norm, lr, resume."""
import csv

import numpy as np
import pytest
import torch

from cmraudit.generators.train_log import COLUMNS, TrainLog, log_to
from cmraudit.generators.training import TrainConfig, lr_factor, train_loop

from .test_training import Interrupt, _loss, _model

CFG = TrainConfig(steps=6, batch_size=16, lr=1e-2, warmup_steps=2, checkpoint_every=2)


def _rows(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    return rows[1:]


def _train(work, logs, **kw):
    with log_to(logs):
        return train_loop(_model(), _loss, n_items=64, config=CFG, seed=0, device=torch.device("cpu"), progress=False,
                          work_dir=work, stage="toy", **kw)


def test_one_row_per_step_with_the_loop_figures(tmp_path):
    res = _train(tmp_path / "w", tmp_path / "logs")
    rows = _rows(tmp_path / "logs" / "toy.csv")
    assert [int(r[0]) for r in rows] == list(range(1, 7))
    assert [float(r[1]) for r in rows] == pytest.approx(res.losses, rel=1e-5)  # the losses the loop kept
    assert [float(r[2]) for r in rows] == pytest.approx(
        [1e-2 * lr_factor(s, warmup=2, total=6) for s in range(6)], rel=1e-5
    )
    assert all(float(r[3]) > 0 and r[4] == "" and float(r[5]) > 0 for r in rows)  # grad norm, no DP, img/s


def test_no_log_outside_log_to(tmp_path):
    train_loop(_model(), _loss, n_items=64, config=CFG, seed=0, device=torch.device("cpu"), progress=False,
               work_dir=tmp_path / "w", stage="toy")
    assert not list(tmp_path.rglob("*.csv"))


def test_resumed_stage_logs_each_step_once_and_as_uninterrupted(tmp_path):
    _train(tmp_path / "a", tmp_path / "la")
    full = _rows(tmp_path / "la" / "toy.csv")

    def stop_at_3(step, loss):
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        _train(tmp_path / "b", tmp_path / "lb", callback=stop_at_3)  # checkpoint at step 2, row 3 already written
    assert [int(r[0]) for r in _rows(tmp_path / "lb" / "toy.csv")] == [1, 2, 3]
    _train(tmp_path / "b", tmp_path / "lb", resume=True)
    resumed = _rows(tmp_path / "lb" / "toy.csv")
    assert [int(r[0]) for r in resumed] == list(range(1, 7))
    assert [r[1:3] for r in resumed] == [r[1:3] for r in full]  # same losses and lr: resume == uninterrupted


def test_long_stages_log_interval_means(tmp_path):
    log = TrainLog("s", total=4001, start=0, directory=tmp_path)  # 4001 steps -> one row per 3 steps
    for step in range(4001):
        log.step(step, loss=float(step), lr=0.1, grad_norm=1.0, items=2)
    log.close()
    rows = _rows(tmp_path / "s.csv")
    assert log.every == 3 and [int(r[0]) for r in rows[:2]] == [3, 6] and int(rows[-1][0]) == 4001
    assert float(rows[0][1]) == pytest.approx(1.0) and float(rows[1][1]) == pytest.approx(4.0)  # mean of 0,1,2 / 3,4,5
    assert len(rows) == 1334


def test_tensorboard_events_carry_the_csv_figures(tmp_path):
    """With the tensorboard package installed, each stage also writes event files with the CSV's numbers."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _train(tmp_path / "work", tmp_path / "logs")
    rows = _rows(tmp_path / "logs" / "toy.csv")
    acc = EventAccumulator(str(tmp_path / "logs" / "tensorboard" / "toy"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [int(r[0]) for r in rows]  # columns: step, loss, lr, …
    assert np.allclose([e.value for e in loss], [float(r[1]) for r in rows], rtol=1e-5)
    assert {"train/lr", "train/grad_norm", "train/img_per_s"} <= set(acc.Tags()["scalars"])
