"""Rich progress bars: one for training steps (loss, it/s, ETA), one for counted work such as sampling.

Inside a heartbeat (no terminal: cmraudit/progress.py) the bars are replaced by the status lines they feed.
"""
from __future__ import annotations

import time

from ..progress import make_console  # noqa: F401 - re-exported
from ..progress import bars_here, end_task, side_summary, task, update
from .distributed import is_main_process


def _rich_progress(*fields: str, transient: bool = False):
    """A rich Progress: description, bar, done/total, the given text ``fields``, elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    *(TextColumn(f) for f in fields),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=transient)


class TrainProgress:
    """The training bar: step count, loss, it/s, elapsed and ETA (no-op when disabled)."""

    def __init__(self, enabled: bool, desc: str, total: int, start: int, *, transient: bool = False):
        self.bar = None
        self.enabled = enabled
        if not enabled:
            return
        task(desc, total, start, announce=True)
        self.desc = desc
        if not bars_here():
            return  # lines instead of a bar that cannot refresh; a worker thread's task shows on the main bar
        self.bar = _rich_progress("loss {task.fields[loss]}", "{task.fields[speed]} it/s", transient=transient)
        self.bar.start()
        self.task = self.bar.add_task(desc, total=total, completed=start, loss="-", speed="-")
        self.t0, self.s0 = time.perf_counter(), start

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        update(step, loss=loss)
        if self.bar is None:
            return
        dt = time.perf_counter() - self.t0
        speed = (step - self.s0) / dt if dt > 0 else 0.0
        beside = side_summary()
        self.bar.update(self.task, completed=step, loss=f"{loss:.4f}", speed=f"{speed:.2f}",
                        description=f"{self.desc} ({beside})" if beside else self.desc)

    def close(self) -> None:
        if self.enabled:
            end_task()
        if self.bar is not None:
            self.bar.stop()


class progress_bar:  # noqa: N801 - used as a context manager
    """Rich progress bar with it/s and ETA (no-op when disabled or not rank 0).

    ``with progress_bar(...) as bar: bar.advance(k)``."""

    def __init__(self, desc: str, *, total: int, enabled: bool = True):
        self.desc, self.total, self.enabled = desc, total, enabled and is_main_process()
        self.bar = None

    def __enter__(self) -> "progress_bar":
        if self.enabled:
            task(self.desc, self.total)
            if bars_here():
                self.bar = _rich_progress()
                self.bar.start()
                self.task = self.bar.add_task(self.desc, total=self.total)
        return self

    def advance(self, k: int = 1) -> None:
        if self.enabled:
            update(advance=k)
        if self.bar is not None:
            self.bar.advance(self.task, k)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            end_task()
        if self.bar is not None:
            self.bar.stop()
