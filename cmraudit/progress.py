"""Progress without a terminal: timestamped status lines for CI logs, and full-width consoles.

On a terminal, training shows a rich bar (loss, it/s, ETA; cmraudit/generators/progress.py) and counted work
(sampling, segmentation) another one.
Without a terminal (a CI job, ``cmd > log 2>&1``) rich bars do not refresh, so :func:`heartbeat`
(started by the CLI around every command) prints to stderr one line per stage change and, while a step
runs, a line at least every :data:`EVERY_S` seconds (``CMRAUDIT_PROGRESS_SECONDS``)::

    [cmraudit +42.0s] fit · image model: step 120/400 (30 %), loss 0.0312, ETA 1m30s

``+42.0s`` is the wall time since the command started, so a log reader (or a test) can see the gaps.
Bars and :func:`stage` feed the status the lines show; outside a heartbeat they only drive the bars.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Iterator

EVERY_S = 10.0  # seconds between status lines without a terminal (the promise is ≤ 30 s)
WIDE = 200  # console width when stdout is not a terminal and COLUMNS is unset (tables never wrap at 80)


class _Status:
    """What the process is doing now: the stage, and the counted task inside it (step/total, loss)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.t0: float | None = None  # heartbeat start (None: no heartbeat, print nothing)
        self.stream = sys.stderr
        self.stage, self.task = "", ""
        self.step = self.total = self.start_step = 0
        self.loss: float | None = None
        self.t_task = time.monotonic()
        self.last_line = 0.0
        self.side: dict[int, _Side] = {}  # tasks of worker threads (jobs side by side), by thread id

    def line(self) -> str:
        now = time.monotonic()
        where = " · ".join(x for x in (self.stage, self.task) if x) or "working"
        text = f"[cmraudit +{now - (self.t0 or now):.1f}s] {where}"
        if self.total:
            text += _counted(self.step, self.total, self.start_step, self.loss, now - self.t_task)
        for side in list(self.side.values()):
            text += f" · {side.desc}" + (_counted(side.step, side.total, side.start, side.loss, now - side.t)
                                         if side.total else "")
        return text

    def emit(self, suffix: str = "", *, only: str | None = None) -> None:
        """Print the status line now (only inside a heartbeat, only on rank 0); ``only``: a line about that task
        alone (``stage · task: started``), not the full status."""
        with self.lock:
            if self.t0 is None or os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports
                return
            now = time.monotonic()
            text = self.line() if only is None else (
                f"[cmraudit +{now - self.t0:.1f}s] " + " · ".join(x for x in (self.stage, only) if x))
            try:
                print(text + suffix, file=self.stream, flush=True)
            except (OSError, ValueError):  # a closed pipe must not break the run
                pass
            self.last_line = time.monotonic()


class _Side:
    """A counted task of a worker thread, shown after the main task on the status line."""

    def __init__(self, desc: str, total: int, start: int) -> None:
        self.desc, self.total, self.step, self.start = desc, int(total), int(start), int(start)
        self.loss: float | None = None
        self.t = time.monotonic()


def _counted(step: int, total: int, start: int, loss: float | None, dt: float) -> str:
    text = f": step {step}/{total} ({100 * step // max(1, total)} %)"
    if loss is not None:
        text += f", loss {loss:.4g}"
    if 0 < step - start and step < total and dt > 0:
        text += f", ETA {_hms((total - step) * dt / (step - start))}"
    return text


def _worker() -> bool:
    return threading.current_thread() is not threading.main_thread()


STATUS = _Status()


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def heartbeat(label: str, *, enabled: bool | None = None, every: float | None = None, stream=None) -> Iterator[None]:
    """Print status lines while the block runs (default: only when stderr is not a terminal).

    A line at each stage change and every ``every`` seconds otherwise; nothing for a block shorter than that."""
    if enabled is None:
        enabled = not is_terminal(stream)
    if not enabled or STATUS.t0 is not None:  # nested: the outer heartbeat reports
        yield
        return
    every = float(os.environ.get("CMRAUDIT_PROGRESS_SECONDS", every or EVERY_S))
    stop = threading.Event()
    with STATUS.lock:
        STATUS.t0 = STATUS.last_line = time.monotonic()
        STATUS.stream = sys.stderr if stream is None else stream
        STATUS.stage, STATUS.task, STATUS.total = label, "", 0

    def _beat() -> None:
        while not stop.wait(min(1.0, every)):
            if time.monotonic() - STATUS.last_line >= every:
                STATUS.emit()

    th = threading.Thread(target=_beat, name="cmraudit-progress", daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join(timeout=2)
        if time.monotonic() - STATUS.t0 >= every:
            STATUS.stage, STATUS.task, STATUS.total = label, "", 0
            STATUS.emit(": finished")
        with STATUS.lock:
            STATUS.t0 = None


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the current pipeline stage (``fit``, ``privacy`` …) for the status lines; prints its start."""
    prev = STATUS.stage
    STATUS.stage, STATUS.task, STATUS.total, STATUS.loss = name, "", 0, None
    STATUS.emit(": started")
    try:
        yield
    finally:
        STATUS.stage, STATUS.task, STATUS.total, STATUS.loss = prev, "", 0, None


def set_stage(name: str) -> None:
    """Enter pipeline stage ``name`` (no block to indent): the status lines name it from now on."""
    STATUS.stage, STATUS.task, STATUS.total, STATUS.loss = name, "", 0, None
    STATUS.emit(": started")


def lines_mode() -> bool:
    """True inside a heartbeat: counted work reports through :func:`task` lines instead of rich bars."""
    return STATUS.t0 is not None


def bars_here() -> bool:
    """True where a rich progress bar may be drawn: on a terminal (not :func:`lines_mode`) and on the main thread
    (a worker thread's task shows on the status line and in the main bar's description instead)."""
    return not lines_mode() and not _worker()


def task(desc: str, total: int, start: int = 0, *, announce: bool = False) -> None:
    """Start a counted task inside the current stage (a training run, a sampling loop). From a worker thread (a job
    side by side, cmraudit.cpu) the task is shown after the main one on the status line."""
    if _worker():
        with STATUS.lock:
            STATUS.side[threading.get_ident()] = _Side(desc, total, start)
        if announce:
            STATUS.emit(": started (side by side)", only=desc + _counted(start, total, start, None, 0.0))
        return
    STATUS.task, STATUS.total, STATUS.step, STATUS.start_step = desc, int(total), int(start), int(start)
    STATUS.loss, STATUS.t_task = None, time.monotonic()
    if announce:
        STATUS.emit(": started", only=desc + (_counted(start, total, start, None, 0.0) if total else ""))


def update(step: int | None = None, *, loss: float | None = None, advance: int = 0, desc: str | None = None) -> None:
    """Progress of the current task: its step (or ``advance`` steps), last loss, or a new description."""
    if _worker():
        side = STATUS.side.get(threading.get_ident())
        if side is not None:
            side.step = int(step) if step is not None else side.step + int(advance)
            side.loss = float(loss) if loss is not None else side.loss
            side.desc = desc if desc is not None else side.desc
        return
    if step is not None:
        STATUS.step = int(step)
    STATUS.step += int(advance)
    if loss is not None:
        STATUS.loss = float(loss)
    if desc is not None:
        STATUS.task = desc


def side_summary() -> str:
    """The worker threads' counted tasks in short (``mask model 300/800``), for a terminal's progress bar."""
    return ", ".join(f"{x.desc} {x.step}/{x.total}" if x.total else x.desc for x in list(STATUS.side.values()))


def end_task() -> None:
    if _worker():
        with STATUS.lock:
            STATUS.side.pop(threading.get_ident(), None)
        return
    STATUS.task, STATUS.total, STATUS.loss = "", 0, None


def make_console(*, stderr: bool = False):
    """A rich Console that renders tables at full width in CI: ``COLUMNS`` if set, else :data:`WIDE` when the
    stream is not a terminal (rich's own default there is 80 columns, which wraps headers)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if "COLUMNS" in os.environ or is_terminal(stream):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=WIDE)
