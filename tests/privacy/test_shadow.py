"""Shadow-model LiRA: math on known Gaussians, an overfit tiny target, and the executors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cmraudit.data.dataset import Dataset
from cmraudit.errors import MissingExtraError
from cmraudit.privacy.config import ShadowConfig
from cmraudit.privacy.mia.executors import EXECUTORS, LocalExecutor, RayExecutor, SlurmExecutor, get_executor
from cmraudit.privacy.mia.metrics import roc_metrics
from cmraudit.privacy.mia.shadow import lira_offline, lira_online, run_shadow_attacks

from .tinygen import TinyGenerator


def test_lira_online_separates_planted_gaussians():
    # 200 examples, 16 shadows; IN scores N(1, 0.5), OUT N(0, 0.5); target: first half IN
    rng = np.random.default_rng(0)
    n, k = 200, 16
    in_mask = rng.random((k, n)) < 0.5
    shadow = np.where(in_mask, 1.0, 0.0) + rng.normal(0, 0.5, (k, n)) + rng.normal(0, 2, n)  # per-example offset
    offset = shadow.mean(0) - np.where(in_mask, 1.0, 0.0).mean(0)
    member = np.arange(n) < n // 2
    target = member * 1.0 + offset + rng.normal(0, 0.5, n)
    s = lira_online(target, shadow, in_mask)
    auc_lira = roc_metrics(s, member)["auc"]
    auc_raw = roc_metrics(target, member)["auc"]
    assert auc_lira > 0.85  # effect size 2σ per example
    assert auc_lira > auc_raw + 0.1  # per-example calibration removes the per-example offset
    out_only = offset + rng.normal(0, 0.5, (k, n))  # offline: shadows never trained on the candidates
    s_off = lira_offline(target, out_only)
    assert roc_metrics(s_off, member)["auc"] > 0.8


def _toy_data(n_pat: int, seed: int, prefix: str) -> Dataset:
    rng = np.random.default_rng(seed)
    imgs, pids = [], []
    for p in range(n_pat):
        base = rng.uniform(-0.8, 0.8, (8, 8))
        for s in range(2):
            imgs.append(np.kron(base + rng.normal(0, 0.05, (8, 8)), np.ones((2, 2))))
            pids.append(f"{prefix}{p:03d}")
    imgs = np.clip(np.array(imgs, np.float32), -1, 1)
    return Dataset(images=imgs, masks=np.zeros(imgs.shape, np.uint8), patient_id=pids)


def test_lira_detects_overfit_tiny_target(tmp_path, tiny_registered):
    """Overfit target: 8 train patients (16 slices), 400 steps; 8 holdout patients; K=8 shadows, seed 0.

    Effect size expected: the target memorises its 16 slices, so LiRA online AUC ≥ 0.75
    (chance 0.5); offline (8 shadows on 8 reference patients) ≥ 0.65.
    """
    train, holdout, ref = _toy_data(8, 1, "t"), _toy_data(8, 2, "h"), _toy_data(8, 3, "r")
    from cmraudit.privacy import AuditConfig, audit_privacy

    target = TinyGenerator(steps=400).fit(train, seed=0)
    cfg = ShadowConfig(
        k=8, executor="inline", workdir=str(tmp_path / "sh")
    )  # generator: the target's own class and params
    full = audit_privacy(
        train=train,
        holdout=holdout,
        synthetic=target.sample(n=8, seed=0),
        generator=target,
        features=("pixel",),
        seed=0,
        config=AuditConfig(attacks=("loss", "fcre"), n_resamples=200, masks=False),
        progress=False,
        shadow=cfg,
        reference=ref,
    )
    res = full.mia
    assert res["loss"].slice.auc.value >= 0.75  # the plain loss attack sees the same overfitting
    assert res["fcre"].slice.auc.value >= 0.6  # legacy FCRE (cross-fitted logistic regression) sees it too
    on, off = res["lira_online"], res["lira_offline"]
    assert on.slice.auc.value >= 0.75, on.slice.auc
    assert on.patient.auc.value >= 0.75, on.patient.auc
    assert off.slice.auc.value >= 0.65, off.slice.auc
    # idempotent: a second run reuses the checkpoints (DONE markers) and gives identical scores
    res2 = run_shadow_attacks(target=target, train=train, holdout=holdout, reference=ref, config=cfg,
                              timesteps=TinyGenerator.audit_timesteps, workdir=tmp_path / "sh", seed=0, n_resamples=200)
    assert res2["lira_online"].slice.auc.value == on.slice.auc.value
    # the shadows rebuilt the target's class from its registry name, not from a module path
    assert on.info["generator"] == "tinygen"
    assert json.loads((tmp_path / "sh" / "online_000" / "spec.json").read_text())["generator"] == "tinygen"
    # without the prediction_pair hook FCRE is skipped with its reason
    from cmraudit.privacy.mia.interface import ATTACKS, AuditContext

    class NoHook:
        tags = target.tags
        loss = target.loss

    ctx = AuditContext(train=train, holdout=holdout, generator=NoHook(), config=AuditConfig(attacks=("fcre",)), seed=0)
    out = ATTACKS.make("fcre").evaluate(ctx)
    assert out["fcre"]["status"] == "skipped" and "prediction_pair" in out["fcre"]["reason"]
    assert len(list((tmp_path / "sh").glob("online_*/DONE"))) == 8


def _square(x):
    return x * x


def test_local_process_pool_executor():
    assert LocalExecutor(max_workers=1).map(_square, [1, 2, 3]) == [1, 4, 9]


def test_slurm_executor_in_submitit_local_mode(tmp_path):
    ex = SlurmExecutor(folder=tmp_path / "sub", cluster="local", timeout_min=5)
    assert ex.map(_square, [3, 4]) == [9, 16]


def test_ray_executor_missing_extra_names_pip_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install cmraudit\[ray\]"):
        RayExecutor()
    with pytest.raises(MissingExtraError):
        get_executor("ray")


def test_ray_executor_in_local_cluster_matches_inline(tmp_path, tiny_registered):
    """The same shadow tasks through a Ray local cluster (2 CPUs) and inline give identical LiRA scores."""
    ray = pytest.importorskip("ray", reason="needs pip install cmraudit[ray]")
    import os
    from pathlib import Path

    train, holdout = _toy_data(4, 1, "t"), _toy_data(4, 2, "h")
    target = TinyGenerator(steps=60).fit(train, seed=0)
    root = str(Path(__file__).resolve().parents[2])  # workers import tests.privacy.tinygen by name
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([root, str(tiny_registered),
                                                                          os.environ.get("PYTHONPATH", "")])}})
    try:
        kw = dict(target=target, train=train, holdout=holdout, reference=None, timesteps=TinyGenerator.audit_timesteps,
                  seed=0, n_resamples=50)
        via_ray = run_shadow_attacks(
            config=ShadowConfig(k=2, executor="ray", modes=("online",), workdir=str(tmp_path / "ray")),
            workdir=tmp_path / "ray",
            **kw,
        )
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    inline = run_shadow_attacks(
        config=ShadowConfig(k=2, executor="inline", modes=("online",), workdir=str(tmp_path / "inl")),
        workdir=tmp_path / "inl",
        **kw,
    )
    assert len(list((tmp_path / "ray").glob("online_*/DONE"))) == 2
    a, b = via_ray["lira_online"], inline["lira_online"]
    assert a.slice.auc.value == b.slice.auc.value
    for i in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / "ray" / f"online_{i:03d}" / "losses.npy"),
                                      np.load(tmp_path / "inl" / f"online_{i:03d}" / "losses.npy"))


def test_shadow_generator_must_be_registered(tmp_path):
    """Shadow training resolves the generator by registry name: an unregistered class is refused, naming it."""
    from cmraudit.errors import ConfigError

    train, holdout = _toy_data(4, 1, "t"), _toy_data(4, 2, "h")
    target = TinyGenerator(steps=2)
    cfg = ShadowConfig(k=2, executor="inline", modes=("online",), workdir=str(tmp_path / "sh"))
    with pytest.raises(ConfigError, match="TinyGenerator is not in the entry-point group cmraudit.generators"):
        run_shadow_attacks(target=target, train=train, holdout=holdout, reference=None, config=cfg,
                           timesteps=TinyGenerator.audit_timesteps, workdir=tmp_path / "sh", seed=0)


def test_executor_registry():
    assert {"inline", "local", "slurm", "ray"} <= set(EXECUTORS.names())
    assert get_executor("inline").map(_square, [2]) == [4]
    from cmraudit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown executor 'nope'; installed executors: inline, local, ray, slurm"):
        get_executor("nope")
