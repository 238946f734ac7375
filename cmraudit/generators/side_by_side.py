"""The mask model and the image stage trained side by side on the CPU (``TwoStageGenerator.fit``).

The two stages are independent: the mask model learns the real masks, the image stage learns images given the real
masks. On a CPU with a thread budget of two or more (:func:`cmraudit.cpu.side_by_side_lanes`) the mask model trains
on a worker thread while the image stage trains on the calling thread, each on one torch thread. The quick preset's
small networks gain 1.3–1.6× from a second thread, so side by side the fit ends sooner (docs/benchmarks.md); each
stage computes exactly what a ``--threads 1`` run computes (tested). Not under DP-SGD, on a GPU, under torchrun, or
when the plugin says its image stage needs the trained mask model (``image_stage_uses_mask_model = True``).

While both run, ``gen.pending_mask_model_`` holds a callable ``wait -> mask model | None`` for the training snapshots
(:mod:`.snapshots`); ``gen.mask_model_`` is set only once both stages have finished.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from ..cpu import Beside, one_torch_thread_each


class _Stopped(Exception):
    """Raised inside the mask stage's training loop when the image stage failed or was interrupted."""


def fit_side_by_side(gen: Any, fit_mask: Callable[[Any], Any], fit_image: Callable[[Any], dict],
                     callback: Callable[[int, float], None] | None) -> tuple[Any, dict]:
    """Run ``fit_mask(callback)`` on a worker thread and ``fit_image(callback)`` here; return (mask model, summary).

    ``callback`` (if any) receives both stages' steps, one call at a time, interleaved. A failure of either stage
    stops the other (the mask stage at its next step) and is raised here; Ctrl-C likewise."""
    lock = threading.Lock()
    stop = threading.Event()
    initialised = threading.Event()

    def mask_cb(step: int, loss: float) -> None:
        initialised.set()
        if stop.is_set():
            raise _Stopped("the image stage stopped")
        if callback is not None:
            with lock:
                callback(step, loss)

    with one_torch_thread_each():
        job = Beside(lambda: fit_mask(mask_cb), name="mask-model", stop=stop)

        def image_cb(step: int, loss: float) -> None:
            err = job.error()
            if err is not None:  # the mask stage failed: stop now, not after the whole image stage
                raise err
            if callback is not None:
                with lock:
                    callback(step, loss)

        # the image stage starts once the mask network is initialised (its first step taken): plugin code may seed
        # torch's global RNG, which the mask network's initialisation draws from
        while not initialised.wait(0.02) and not job.done():
            pass
        if job.done():
            job.result()  # raises the mask stage's error before the image stage starts
        gen.pending_mask_model_ = lambda wait: job.result() if wait or job.done() else None
        try:
            summary = fit_image(image_cb)
        except BaseException:
            job.cancel()
            raise
        finally:
            del gen.pending_mask_model_
        return job.result(), summary
