"""A micro FM model trained briefly honours the given masks (LV bright, MYO dark), and its pieces are correct."""
import numpy as np
import pytest
import torch

from cmraudit.errors import UsageError
from cmraudit.testing import make_toy_dataset
from cmraudit_fm import FMGenerator
from cmraudit_fm.flow import SolverSpec, linear_path, ot_pair, solve_ode


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _label_means(images, masks):
    return {k: float(images[masks == v].mean()) for k, v in {"bg": 0, "RV": 1, "MYO": 2, "LV": 3}.items()}


def test_fm_honours_masks():
    train = make_toy_dataset(n_patients=8, slices=4, size=32, seed=0)
    test = make_toy_dataset(n_patients=3, slices=2, size=32, seed=5)  # unseen patients: new centres and radii
    gen = FMGenerator(
        **{
            **FMGenerator.conformance_params(),
            "steps": 100,
            "batch_size": 8,
            "lr": 2e-3,
            "warmup_steps": 10,
            "ema_decay": 0.99,
            "ode_steps": 5,
        }
    )
    gen.fit(train, seed=0, progress=False)
    syn = gen.sample(masks=np.asarray(test.masks), seed=3)
    got = _label_means(np.asarray(syn.images), np.asarray(syn.masks))
    real = _label_means(np.asarray(test.images), np.asarray(test.masks))
    # LV (real ≈ 0.8) brighter than MYO (real ≈ −0.8) inside the *given* masks, by a wide margin
    assert got["LV"] - got["MYO"] > 0.8, (got, real)
    assert got["RV"] - got["MYO"] > 0.5, (got, real)
    # and per structure close to the real intensities
    assert all(abs(got[k] - real[k]) < 0.35 for k in got), (got, real)
    # training reduced the velocity loss
    assert gen.training_["image"]["loss_end"] < 0.7 * gen.training_["image"]["loss_start"]


def test_solvers_integrate_linear_flow_exactly():
    # constant velocity field v = c: every solver lands on x0 + c with steps·NFE_per_step evaluations
    c = torch.full((2, 1, 4, 4), 0.7)
    x0 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for solver, nfe in (("euler", 3), ("midpoint", 6), ("heun", 6)):
        res = solve_ode(lambda x, t: c.expand_as(x), x0, SolverSpec(solver, 3))
        assert res.nfe == nfe
        torch.testing.assert_close(res.x, x0 + c)


def test_second_order_solvers_beat_euler():
    # v(x, s) = 2s (the network time input is s·1000): exact x(1) = x0 + 1; Euler is first order, midpoint/Heun exact
    # here
    x0 = torch.zeros(1, 1, 2, 2)
    errs = {
        s: abs(
            float(
                solve_ode(lambda x, t: (2 * t / 1000.0).view(-1, 1, 1, 1).expand_as(x), x0, SolverSpec(s, 4)).x.mean()
            )
            - 1
        )
        for s in ("euler", "midpoint", "heun")
    }
    assert errs["euler"] > 0.1 and errs["midpoint"] < 1e-6 and errs["heun"] < 1e-6, errs


def test_linear_path_and_ot_pairing():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(5, 1, 3, 3, generator=g), torch.randn(5, 1, 3, 3, generator=g)
    xs, v = linear_path(x0, x1, torch.tensor([0.0, 1.0, 0.5, 0.25, 0.75]))
    torch.testing.assert_close(xs[0], x0[0])
    torch.testing.assert_close(xs[1], x1[1])
    torch.testing.assert_close(xs[2], 0.5 * (x0[2] + x1[2]))
    torch.testing.assert_close(v, x1 - x0)
    # OT pairing: a permutation of the noise that never increases the total squared distance; recovers a planted one
    perm = torch.tensor([3, 0, 4, 1, 2])
    paired = ot_pair(x1[perm] + 0.01 * x0, x1)
    torch.testing.assert_close(paired, (x1[perm] + 0.01 * x0)[torch.argsort(perm)])
    p2 = ot_pair(x0, x1)
    assert sorted(map(tuple, p2.flatten(1).tolist())) == sorted(map(tuple, x0.flatten(1).tolist()))
    assert ((p2 - x1) ** 2).sum() <= ((x0 - x1) ** 2).sum()


def test_fm_loss_time_grid_and_errors():
    gen = FMGenerator(**FMGenerator.conformance_params()).fit(
        make_toy_dataset(n_patients=2, slices=2, size=32), seed=0, progress=False
    )
    ds = make_toy_dataset(n_patients=1, slices=3, size=32, seed=2)
    im, mk = np.asarray(ds.images), np.asarray(ds.masks)
    a = gen.loss(im, mk, t=np.array([0, 500, 999]))
    assert a.shape == (3,) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, gen.loss(im, mk, t=np.array([0, 500, 999])))
    pred, target = gen.prediction_pair(im, mk, t=500, seed=3)  # the FCRE hook, same noise as loss()
    assert pred.shape == target.shape == (3, 32, 32)
    np.testing.assert_allclose(((pred - target) ** 2).mean((1, 2)), gen.loss(im, mk, t=500, seed=3), rtol=1e-5)
    with pytest.raises(UsageError, match="0..999"):
        gen.loss(im, mk, t=1000)
    with pytest.raises(UsageError, match="solver"):
        FMGenerator(**{**FMGenerator.conformance_params(), "solver": "rk4"}).fit(ds, seed=0, progress=False)


def test_fm_sampling_network_runs_under_the_sampling_autocast(monkeypatch):
    """The ODE's network evaluations follow cmraudit.device.autocast (bfloat16 on native-bf16 CPUs), the updates stay
    float32: deterministic per precision, close to float32's images, not equal to them."""
    from cmraudit.device import ENV_CPU_PRECISION

    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    gen = FMGenerator(**FMGenerator.conformance_params()).fit(ds, seed=0, progress=False)
    m = np.asarray(ds.masks[:3])
    monkeypatch.setenv(ENV_CPU_PRECISION, "bf16")
    a, b = gen.sample(masks=m, seed=4).images, gen.sample(masks=m, seed=4).images
    monkeypatch.setenv(ENV_CPU_PRECISION, "fp32")
    c = gen.sample(masks=m, seed=4).images
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and not np.array_equal(a, c)
    assert np.corrcoef(a.ravel(), c.ravel())[0, 1] > 0.99
