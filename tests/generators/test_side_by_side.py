"""The mask model and the image stage trained side by side on the CPU (cmraudit/generators/side_by_side.py).

Side by side, each stage computes on one torch thread, so the fitted weights (and the training snapshots) are those
of a fit one stage after the other at ``--threads 1``, bit for bit; a failure of either stage stops the other."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cmraudit.cpu import ENV_SIDE_BY_SIDE
from cmraudit.generators.registry import get_plugin
from cmraudit.generators.snapshots import snapshot_callback
from cmraudit.generators.train_log import log_to
from cmraudit.testing import make_toy_dataset

WORKER = "cmraudit-mask-model"


@pytest.fixture
def threads():
    """Set torch's thread budget for a test; restored afterwards."""
    n = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(n)


def _gen(**kw):
    return get_plugin("ddpm").cls.from_preset("micro", device="cpu", **kw)


def _fit(ds, *, log_dir=None, callback=None, **kw):
    gen = _gen(**kw)
    if log_dir is None:
        return gen.fit(ds, seed=1, progress=False, callback=callback)
    with log_to(log_dir):
        return gen.fit(ds, seed=1, progress=False, callback=callback)


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_side_by_side_equals_one_stage_after_the_other_on_one_thread(tmp_path, threads, monkeypatch):
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    calls: list[tuple[str, int]] = []

    def cb(step, loss):
        calls.append((threading.current_thread().name, step))

    threads(2)
    side = _fit(ds, log_dir=tmp_path / "side", callback=cb, mask_steps=24, steps=8)
    assert torch.get_num_threads() == 2  # the budget is restored
    on_worker = [s for name, s in calls if name == WORKER]
    on_main = [s for name, s in calls if name != WORKER]
    assert on_worker == list(range(1, 25)) and on_main == list(range(1, 9))  # both stages, each in order

    monkeypatch.setenv(ENV_SIDE_BY_SIDE, "0")
    calls.clear()
    seq = _fit(ds, log_dir=tmp_path / "seq", callback=cb, mask_steps=24, steps=8)
    assert [s for _, s in calls] == list(range(1, 25)) + list(range(1, 9))  # one after the other: no worker
    assert not any(name == WORKER for name, _ in calls)
    threads(1)
    one = _fit(ds, log_dir=tmp_path / "one", mask_steps=24, steps=8)

    assert _equal(side.mask_model_.state_dict(), one.mask_model_.state_dict())
    assert _equal(side.image_modules_["image"].state_dict(), one.image_modules_["image"].state_dict())
    assert side.training_["mask"]["losses"] == one.training_["mask"]["losses"]
    snaps = [np.load(tmp_path / d / "snapshots" / "image_model.npz") for d in ("side", "one")]
    assert snaps[0]["steps"].tolist() == snaps[1]["steps"].tolist()
    assert (snaps[0]["masks"] == snaps[1]["masks"]).all() and (snaps[0]["images"] == snaps[1]["images"]).all()
    assert seq.mask_model_ is not None and not hasattr(side, "pending_mask_model_")
    # the worker thread sees the caller's log directory (context variables): both stages' training logs are written
    assert (tmp_path / "side" / "mask_model.csv").is_file() and (tmp_path / "side" / "image_model.csv").is_file()


def test_snapshots_wait_for_a_mask_model_still_training(tmp_path):
    """Marks reached before the mask model is trained keep the weights and are drawn later: the same file."""
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    gen = _fit(ds, mask_steps=2, steps=2)
    net = gen.image_modules_["image"]
    mask_model = gen.mask_model_
    files = {}
    for how in ("ready", "pending"):
        g = _gen(mask_steps=2, steps=2)
        g.__dict__.update(gen.__dict__)
        del g.mask_model_
        asked: list[bool] = []
        if how == "ready":
            g.mask_model_ = mask_model
        else:
            g.pending_mask_model_ = lambda wait: (asked.append(wait), mask_model if wait else None)[1]
        with log_to(tmp_path / how):
            cb = snapshot_callback(g, net, total=4, size=(32, 32), seed=5, device=torch.device("cpu"), dp=False,
                                   callback=None)
            for step in range(1, 5):
                with torch.no_grad():  # the weights change between marks, as in training
                    next(net.parameters()).add_(0.01)
                cb(step, 0.0)
        files[how] = np.load(tmp_path / how / "snapshots" / "image_model.npz")
        with torch.no_grad():
            next(net.parameters()).sub_(0.04)
        if how == "pending":
            assert asked == [False, False, False, True]  # only the last mark waits for the mask model
    assert files["ready"]["steps"].tolist() == files["pending"]["steps"].tolist() == [1, 2, 3, 4]
    assert (files["ready"]["images"] == files["pending"]["images"]).all()
    assert not (files["ready"]["images"][0] == files["ready"]["images"][-1]).all()


def test_a_failing_mask_stage_stops_the_image_stage(threads):
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    image_steps: list[int] = []

    def cb(step, loss):
        if threading.current_thread().name == WORKER and step == 3:
            raise RuntimeError("mask stage failed on purpose")
        if threading.current_thread().name != WORKER:
            image_steps.append(step)

    threads(2)
    with pytest.raises(RuntimeError, match="on purpose"):
        _fit(ds, callback=cb, mask_steps=10, steps=400)
    assert len(image_steps) < 400  # stopped early, not after the whole image stage
    assert torch.get_num_threads() == 2
    assert not any(t.name == WORKER for t in threading.enumerate())


def test_a_failing_image_stage_stops_the_mask_stage(threads):
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    mask_steps: list[int] = []

    def cb(step, loss):
        if threading.current_thread().name == WORKER:
            mask_steps.append(step)
        elif step == 3:
            raise KeyboardInterrupt  # as Ctrl-C would, in the main thread

    threads(2)
    with pytest.raises(KeyboardInterrupt):
        _fit(ds, callback=cb, mask_steps=2000, steps=10)
    assert 0 < len(mask_steps) < 2000
    assert not any(t.name == WORKER for t in threading.enumerate())  # the worker has ended
    assert torch.get_num_threads() == 2


def test_not_side_by_side_under_dp_on_one_thread_or_when_the_image_stage_needs_the_mask_model(threads, monkeypatch):
    from cmraudit.cpu import side_by_side_lanes

    cpu = torch.device("cpu")
    threads(2)
    assert side_by_side_lanes(cpu, 2) == 2 and side_by_side_lanes(cpu, 1) == 1
    assert side_by_side_lanes(torch.device("cuda"), 4) == 1
    threads(1)
    assert side_by_side_lanes(cpu, 4) == 1
    threads(2)
    monkeypatch.setenv(ENV_SIDE_BY_SIDE, "0")
    assert side_by_side_lanes(cpu, 4) == 1
    monkeypatch.delenv(ENV_SIDE_BY_SIDE)

    class NeedsMasks(get_plugin("ddpm").cls):
        image_stage_uses_mask_model = True

        def fit_image_stage(self, *a, **kw):
            assert self.mask_model_ is not None  # trained before the image stage starts
            return super().fit_image_stage(*a, **kw)

    names: list[str] = []
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    NeedsMasks.from_preset("micro", device="cpu", mask_steps=3, steps=3).fit(
        ds, seed=0, progress=False, callback=lambda s, l: names.append(threading.current_thread().name))
    assert names and WORKER not in names
    names.clear()
    from cmraudit.dp import DPConfig

    ds = make_toy_dataset(n_patients=6, slices=2, size=32)  # DP-SGD samples ≤ 1 batch of patients per step
    _gen(mask_steps=3, steps=3).fit(ds, seed=0, progress=False, dp=DPConfig(epsilon=8, delta=1e-3),
                                    callback=lambda s, l: names.append(threading.current_thread().name))
    assert names and WORKER not in names  # DP-SGD: one stage after the other (the budgets compose in order)


@pytest.mark.parametrize("name", ["ldm", "fm"])
def test_the_other_built_in_generators_side_by_side_equal_one_thread(name, threads, monkeypatch):
    """The LDM's own image stage (autoencoder, then latent UNet) and the flow model also run beside the mask model."""
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)

    def fit():
        return get_plugin(name).cls.from_preset("micro", device="cpu", mask_steps=8).fit(ds, seed=2, progress=False)

    threads(2)
    side = fit()
    monkeypatch.setenv(ENV_SIDE_BY_SIDE, "0")
    threads(1)
    one = fit()
    assert _equal(side.mask_model_.state_dict(), one.mask_model_.state_dict())
    assert side.image_modules_.keys() == one.image_modules_.keys()
    for key in side.image_modules_:
        assert _equal(side.image_modules_[key].state_dict(), one.image_modules_[key].state_dict()), key


def test_an_image_stage_reading_the_mask_model_side_by_side_gets_a_clear_error(threads):
    class ReadsMasks(get_plugin("ddpm").cls):  # forgot image_stage_uses_mask_model = True
        def fit_image_stage(self, *a, **kw):
            self.mask_model_.sample
            return super().fit_image_stage(*a, **kw)

    threads(2)
    gen = ReadsMasks.from_preset("micro", device="cpu", mask_steps=3, steps=3)
    with pytest.raises(AttributeError, match="image_stage_uses_mask_model = True"):
        gen.fit(make_toy_dataset(n_patients=3, slices=2, size=32), seed=0, progress=False)
    assert not hasattr(gen, "pending_mask_model_") and not any(t.name == WORKER for t in threading.enumerate())
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        gen.no_such_thing
    assert not hasattr(gen, "mask_model_")  # hasattr still answers False for a generator not fitted
