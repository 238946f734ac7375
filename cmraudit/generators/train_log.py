"""Per-stage training logs: ``<log dir>/<stage>.csv`` written by :func:`cmraudit.generators.training.train_loop`.

The pipeline (``cmraudit run``) points the logs at ``RUN/logs/`` with :func:`log_to` around the generator's
``fit``; every ``train_loop`` inside (mask model, image model, autoencoder) then writes one CSV named after
its ``stage=``. Columns (see docs/report-schema.md#training-logs):

``step``       global optimiser step at the end of the logged interval (1-based);
``loss``       mean training loss over the interval's steps;
``lr``         learning rate of the interval's last step;
``grad_norm``  mean L2 norm of the gradient applied (before clipping; under DP the clipped, noised gradient);
``epsilon``    DP-SGD only: ε of this stage spent so far (at its δ, per patient); empty without DP;
``img_per_s``  training slices per second over the interval (all ranks).

One row per logged interval of ``every`` steps (``every`` = 1 up to :data:`MAX_ROWS` steps, so a micro or
quick run logs every step). Rows are flushed as they are written, so ``tail -f`` follows a run.
A resumed stage keeps the rows of the steps already taken and appends the rest.

When the ``tensorboard`` package is installed (``pip install cmraudit[tensorboard]``), the same figures also go
to TensorBoard event files in ``<log dir>/tensorboard/<stage>/`` (tags ``train/loss``, ``train/lr``,
``train/grad_norm``, ``train/epsilon``, ``train/img_per_s``; ``tensorboard --logdir RUN/logs/tensorboard``).
"""
from __future__ import annotations

import contextlib
import contextvars
import csv
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator

COLUMNS = ("step", "loss", "lr", "grad_norm", "epsilon", "img_per_s")
LOGS_DIR = "logs"  # RUN/logs/<stage>.csv
TENSORBOARD_DIR = "tensorboard"  # RUN/logs/tensorboard/<stage>/ (only with the tensorboard package)
MAX_ROWS = 2000  # a longer stage logs the mean over every ceil(total / MAX_ROWS) steps
MAX_EPSILON_EVALS = 100  # the accountant's ε is costly (PRV): at most this many evaluations per stage

_LOG_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("cmraudit_train_log_dir", default=None)


@contextlib.contextmanager
def log_to(directory: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, every ``train_loop`` writes ``directory/<stage>.csv`` (``None``: no logs)."""
    token = _LOG_DIR.set(None if directory is None else Path(directory))
    try:
        yield
    finally:
        _LOG_DIR.reset(token)


def current_log_dir() -> Path | None:
    return _LOG_DIR.get()


def _fmt(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.6g}"


class TrainLog:
    """Accumulates per-step figures and writes one CSV row per interval (a no-op without a log directory)."""

    def __init__(self, stage: str, *, total: int, start: int, enabled: bool = True,
                 epsilon: Callable[[], float] | None = None, directory: Path | None = None):
        directory = current_log_dir() if directory is None else directory
        self.path = None if directory is None or not enabled else directory / f"{stage}.csv"
        self.total, self.every = int(total), max(1, math.ceil(int(total) / MAX_ROWS))
        n_rows = math.ceil(int(total) / self.every)
        self.eps_every = max(1, math.ceil(n_rows / MAX_EPSILON_EVALS))
        self.epsilon, self.rows = epsilon, 0
        self._reset(time.perf_counter())
        self._fh = None
        self._tb = None
        if self.path is None:
            return
        self._tb = _tensorboard_writer(self.path.parent / TENSORBOARD_DIR / stage)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._rows_before(start)
        self._fh = open(self.path, "w", newline="", encoding="utf-8")
        self._w = csv.writer(self._fh)
        self._w.writerow(COLUMNS)
        self._w.writerows(kept)
        self._fh.flush()
        self.rows = len(kept)

    def _rows_before(self, start: int) -> list[list[str]]:
        """Rows of an earlier run of this stage up to ``start`` (a resume); nothing on a fresh start."""
        if start <= 0 or not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows or tuple(rows[0]) != COLUMNS:
            return []
        return [r for r in rows[1:] if len(r) == len(COLUMNS) and r[0].isdigit() and int(r[0]) <= start]

    def _reset(self, now: float) -> None:
        self.t0, self.n, self.items, self.loss_sum, self.loss_n, self.gn_sum, self.gn_n = now, 0, 0, 0.0, 0, 0.0, 0

    def step(self, step: int, *, loss: float, lr: float, grad_norm: float | None, items: int) -> None:
        """Record step ``step`` (0-based); write a row at the end of each interval and at the last step."""
        if self._fh is None:
            return
        self.n += 1
        self.items += int(items)
        if math.isfinite(loss):
            self.loss_sum, self.loss_n = self.loss_sum + loss, self.loss_n + 1
        if grad_norm is not None and math.isfinite(grad_norm):
            self.gn_sum, self.gn_n = self.gn_sum + grad_norm, self.gn_n + 1
        done = step + 1
        if done % self.every and done != self.total:
            return
        now = time.perf_counter()
        eps = None
        if self.epsilon is not None and (self.rows % self.eps_every == 0 or done == self.total):
            eps = float(self.epsilon())
        row = {"loss": self.loss_sum / self.loss_n if self.loss_n else None, "lr": lr,
               "grad_norm": self.gn_sum / self.gn_n if self.gn_n else None, "epsilon": eps,
               "img_per_s": self.items / (now - self.t0) if now > self.t0 else None}
        self._w.writerow([done] + [_fmt(row[c]) for c in COLUMNS[1:]])
        self._fh.flush()
        if self._tb is not None:
            for k, v in row.items():
                if v is not None and math.isfinite(v):
                    self._tb.add_scalar(f"train/{k}", float(v), done)
            self._tb.flush()
        self.rows += 1
        self._reset(now)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _tensorboard_writer(directory: Path):
    """A TensorBoard ``SummaryWriter`` for ``directory``, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional extra: the CSV log is the record
        return None
    return SummaryWriter(log_dir=str(directory))


def grad_norm(params) -> float | None:
    """L2 norm of the gradients now held by ``params`` (None when none has one)."""
    import torch

    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else None
