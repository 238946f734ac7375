"""The plugin conformance suite (docs/design.md § 5), in the spirit of sklearn's ``check_estimator``.

Each check is a function ``check_x(ctx)`` that raises ``AssertionError`` (or any error)
with a message saying what was expected; :func:`cmraudit.testing.applicable.yield_checks` yields them with, for
a check the generator's tags make inapplicable, the reason it is skipped;
:func:`check_generator` returns one :class:`CheckResult` per check (passed / failed / skipped).
The fitted generator is shared between checks (fit once, on a tiny toy dataset, with the plugin's
``conformance_params()``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.dataset import Dataset
from ..dp import DPConfig
from ..errors import NotFittedError, UsageError
from ..generators.base import GeneratorTags
from .harness import STATUSES, CheckContext, CheckResult, make_context, run_check  # noqa: F401 - re-exported
from .toy import make_toy_dataset


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


# ------------------------------------------------------------------ checks
def check_init_stores_params(ctx: CheckContext) -> None:
    """``__init__`` stores parameters only: get_params() echoes them, no fitted attribute exists, clone works."""
    gen = ctx.make()
    _expect(hasattr(gen, "get_params"), "the generator has no get_params() method")
    got = gen.get_params()
    for k, v in ctx.params.items():
        _expect(k in got, f"get_params() lacks the constructor parameter {k!r}")
        _expect(_same(got[k], v), f"get_params()[{k!r}] is {got[k]!r} but the constructor received {v!r}")
    fitted = [k for k in vars(gen) if k.endswith("_") and not k.startswith("_")]
    _expect(not fitted, f"__init__ set fitted attributes {fitted}; set them in fit()")
    clone = ctx.cls(**got)
    _expect(
        all(_same(clone.get_params()[k], v) for k, v in got.items()),
        "cls(**get_params()) does not reproduce the parameters",
    )


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def check_tags(ctx: CheckContext) -> None:
    """The class exposes ``tags`` (a GeneratorTags) and a ``name``."""
    _expect(isinstance(ctx.tags(), GeneratorTags), f"tags must be a GeneratorTags, got {type(ctx.tags()).__name__}")


def check_not_fitted_error(ctx: CheckContext) -> None:
    """``sample`` before ``fit`` raises NotFittedError."""
    gen = ctx.make()
    try:
        gen.sample(n=2, seed=0)
    except NotFittedError:
        return
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"sample() before fit raised {type(e).__name__} ({e}), expected NotFittedError") from e
    raise AssertionError("sample() before fit returned without raising NotFittedError")


def check_unknown_param_rejected(ctx: CheckContext) -> None:
    """An unknown constructor parameter is rejected with TypeError or UsageError."""
    try:
        ctx.cls(**ctx.params, not_a_parameter_xyz=1)
    except (TypeError, UsageError) as e:
        _expect("not_a_parameter_xyz" in str(e), f"the error does not name the bad parameter: {e}")
        return
    raise AssertionError("an unknown parameter was accepted silently")


def check_bad_params_rejected(ctx: CheckContext) -> None:
    """Each of the plugin's ``conformance_bad_params()`` is rejected (at init or fit) with a UsageError naming the
    problem."""
    bad = getattr(ctx.cls, "conformance_bad_params", None)
    cases = bad() if callable(bad) else []
    for case in cases:
        try:
            gen = ctx.cls(**{**ctx.params, **case})
            gen.fit(ctx.train.subset(range(4)), seed=0, progress=False, **ctx.fit_kwargs)
        except UsageError as e:
            _expect(len(str(e)) > 20, f"the error for {case} is too terse to help: {e!r}")
            continue
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"bad parameters {case} raised {type(e).__name__} ({e}), expected UsageError") from e
        raise AssertionError(f"bad parameters {case} were accepted")


def check_fit_returns_self(ctx: CheckContext) -> None:
    """``fit`` returns the generator itself and sets fitted attributes (ending in ``_``)."""
    gen = ctx.fitted()
    _expect(ctx._fitted[1] is gen, f"fit returned {type(ctx._fitted[1]).__name__}, expected self")
    _expect(
        any(k.endswith("_") and not k.startswith("_") for k in vars(gen)),
        "fit set no fitted attribute (name ending in _)",
    )


def _check_dataset(ds: Any, *, n: int, shape: tuple[int, int], what: str) -> None:
    _expect(isinstance(ds, Dataset), f"{what} returned {type(ds).__name__}, expected a cmraudit Dataset")
    _expect(len(ds) == n, f"{what} returned {len(ds)} slices, expected {n}")
    _expect(ds.shape == shape, f"{what} returned slices of {ds.shape}, expected {shape}")
    _expect(
        ds.images.dtype == np.float32 and ds.masks.dtype == np.uint8,
        f"{what}: dtypes {ds.images.dtype}/{ds.masks.dtype}, expected float32/uint8",
    )
    im = np.asarray(ds.images)
    _expect(bool(np.isfinite(im).all()), f"{what}: images contain NaN/Inf")
    _expect(
        im.min() >= -1.0001 and im.max() <= 1.0001,
        f"{what}: image range {im.min():.3f}..{im.max():.3f} outside [-1, 1]",
    )
    _expect(int(np.asarray(ds.masks).max(initial=0)) <= 3, f"{what}: mask labels above 3")
    _expect(all(str(s).startswith("synthetic") for s in ds.source), f"{what}: source must start with 'synthetic'")


def check_sample_n(ctx: CheckContext) -> None:
    """``sample(n=…)`` returns n slices of the training size, float32 in [-1, 1], uint8 labels 0..3."""
    gen = ctx.fitted()
    _check_dataset(gen.sample(n=3, seed=1), n=3, shape=ctx.train.shape, what="sample(n=3)")


def check_sample_masks(ctx: CheckContext) -> None:
    """``sample(masks=…)`` keeps the given masks row for row (paired generation)."""
    gen = ctx.fitted()
    masks = np.asarray(ctx.train.masks[:3])
    ds = gen.sample(masks=masks, seed=2)
    _check_dataset(ds, n=3, shape=ctx.train.shape, what="sample(masks=…)")
    _expect(np.array_equal(np.asarray(ds.masks), masks), "sample(masks=m) returned masks different from m")


def check_sample_args(ctx: CheckContext) -> None:
    """Giving both or neither of ``masks`` and ``n`` is a UsageError."""
    gen = ctx.fitted()
    for kw in ({}, {"n": 2, "masks": np.asarray(ctx.train.masks[:2])}):
        try:
            gen.sample(seed=0, **kw)
        except UsageError:
            continue
        except Exception as e:  # noqa: BLE001
            raise AssertionError(
                f"sample({', '.join(kw) or 'no masks, no n'}) raised {type(e).__name__}, expected UsageError"
            ) from e
        raise AssertionError(f"sample({', '.join(kw) or 'no masks, no n'}) did not raise UsageError")


def check_seed_determinism(ctx: CheckContext) -> None:
    """The same seed gives identical samples; another seed gives different ones."""
    gen = ctx.fitted()
    kw = {"n": 2} if ctx.tags().two_stage else {"masks": np.asarray(ctx.train.masks[:2])}
    a, b, c = gen.sample(seed=5, **kw), gen.sample(seed=5, **kw), gen.sample(seed=6, **kw)
    _expect(
        np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks), "the same seed gave different samples"
    )
    _expect(not np.array_equal(a.images, c.images), "seeds 5 and 6 gave identical images")


def check_save_load_roundtrip(ctx: CheckContext) -> None:
    """save → load gives a generator whose samples are identical for the same seed."""
    gen = ctx.fitted()
    kw = {"n": 2} if ctx.tags().two_stage else {"masks": np.asarray(ctx.train.masks[:2])}
    with tempfile.TemporaryDirectory() as d:
        gen.save(Path(d) / "model")
        loaded = ctx.cls.load(Path(d) / "model")
    _expect(type(loaded) is ctx.cls, f"load returned {type(loaded).__name__}, expected {ctx.cls.__name__}")
    a, b = gen.sample(seed=3, **kw), loaded.sample(seed=3, **kw)
    _expect(
        np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks),
        "samples differ after save/load with the same seed",
    )


def check_dp_hook(ctx: CheckContext) -> None:
    """``supports_dp``: a micro fit under ``DPConfig(epsilon=8, delta=1e-3)`` reports ``dp_`` with ε ≤ 8 per patient
    and samples; otherwise ``fit(dp=…)`` is a UsageError (never silently non-private)."""
    dp = DPConfig(epsilon=8.0, delta=1e-3)
    refuses = False
    if ctx.tags().supports_dp and callable(getattr(ctx.make(), "check_dp", None)):  # duck-typed classes may lack it
        try:  # these parameters may be ones DP-SGD cannot cover (e.g. fm with ot_pairing): then fit must refuse
            ctx.make().check_dp()
        except UsageError:
            refuses = True
    if refuses or not ctx.tags().supports_dp:
        try:
            ctx.make().fit(ctx.train.subset(range(4)), seed=0, progress=False, dp=dp, **ctx.fit_kwargs)
        except UsageError:
            return
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"fit(dp=…) raised {type(e).__name__} ({e}), expected UsageError") from e
        raise AssertionError("fit(dp=…) trained although tags.supports_dp is False or check_dp() refuses these "
                             "parameters")
    size = int(ctx.params.get("image_size") or 32)
    train = make_toy_dataset(n_patients=12, slices=2, size=size, seed=ctx.seed + 5)
    gen = ctx.make()  # micro batch_size (4) ≤ 12 patients
    gen.fit(train, seed=0, progress=False, dp=dp, **ctx.fit_kwargs)
    block = getattr(gen, "dp_", None)
    _expect(
        isinstance(block, dict),
        f"after fit(dp=…) gen.dp_ is {block!r}, expected the generator.dp dict (compose_budget)",
    )
    eps = block.get("epsilon")
    _expect(
        isinstance(eps, (int, float)) and 0 < eps <= 8.0 + 1e-6, f"gen.dp_['epsilon'] = {eps!r}, expected in (0, 8]"
    )
    _expect(block.get("unit") == "patient", f"gen.dp_['unit'] = {block.get('unit')!r}, expected 'patient'")
    _expect(bool(block.get("stages")), "gen.dp_['stages'] is empty; every stage trained on patient data must be listed")
    _check_dataset(gen.sample(n=2, seed=1), n=2, shape=train.shape, what="sample(n=2) after a DP fit")


def check_loss(ctx: CheckContext) -> None:
    """With ``has_loss``: ``loss(images, masks, t=…)`` returns one finite number per slice, deterministic by seed."""
    gen = ctx.fitted()
    im, mk = np.asarray(ctx.train.images[:3]), np.asarray(ctx.train.masks[:3])
    a = np.asarray(gen.loss(im, mk, t=100))
    _expect(a.shape == (3,), f"loss returned shape {a.shape}, expected (3,)")
    _expect(bool(np.isfinite(a).all()), "loss returned NaN/Inf")
    _expect(np.array_equal(a, np.asarray(gen.loss(im, mk, t=100))), "loss is not deterministic for the same inputs")


def check_hooks(ctx: CheckContext) -> None:
    """Hooks declared in ``tags.hooks`` exist; ``noise_prediction``: schedule endpoints, shape, determinism."""
    hooks = tuple(getattr(ctx.tags(), "hooks", ()) or ())
    methods = {"loss": ("loss",), "prediction_pair": ("prediction_pair",), "velocity_loss": ("loss",),
               "noise_prediction": ("noise_schedule", "predict_noise")}
    for h in hooks:
        for m in methods.get(h, ()):
            _expect(callable(getattr(ctx.cls, m, None)), f"tags.hooks lists {h!r} but the class has no {m}() method")
    if "noise_prediction" not in hooks:
        return
    gen = ctx.fitted()
    T = int(getattr(gen, "num_train_timesteps", 1000))
    (a0, s0), (a1, s1) = gen.noise_schedule(0), gen.noise_schedule(T - 1)
    _expect(
        a0 > 0.9 and s0 < 0.2 and a1 < 0.2 and s1 > 0.9,
        f"noise_schedule: t = 0 must be (nearly) clean and t = T-1 (nearly) pure noise, got {(a0, s0)} and {(a1, s1)}",
    )
    im, mk = np.asarray(ctx.train.images[:3], np.float32), np.asarray(ctx.train.masks[:3])
    e = np.asarray(gen.predict_noise(im, mk, t=T // 2))
    _expect(e.shape == im.shape and bool(np.isfinite(e).all()), f"predict_noise returned shape {e.shape} or NaN/Inf")
    _expect(np.allclose(e, gen.predict_noise(im, mk, t=T // 2)), "predict_noise is not deterministic")


CHECKS: tuple[Callable[[CheckContext], None], ...] = (
    check_tags,
    check_init_stores_params,
    check_unknown_param_rejected,
    check_not_fitted_error,
    check_bad_params_rejected,
    check_fit_returns_self,
    check_sample_n,
    check_sample_masks,
    check_sample_args,
    check_seed_determinism,
    check_save_load_roundtrip,
    check_dp_hook,
    check_loss,
    check_hooks,
)
