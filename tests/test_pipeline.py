"""cmraudit.pipeline.run: the run directory of the shared contract, a valid report, patient-disjoint splits."""
import json

import numpy as np
import pytest

from cmraudit.data.dataset import read_dataset
from cmraudit.errors import UsageError
from cmraudit.pipeline import STAGES, RunConfig, run


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    return run(
        RunConfig(
            generator="ddpm",
            preset="micro",
            out=str(out),
            seed=3,
            n_samples=6,
            n_paired=4,
            device="cpu",
            progress=False,
        )
    )


def test_run_directory(result):
    d = result.run_dir
    for name in (
        "report.json",
        "split.json",
        "samples.png",
        "model/config.json",
        "synthetic/images.npy",
        "synthetic_paired/images.npy",
        "synthetic_nifti/images.nii.gz",
        "synthetic_nifti/masks.nii.gz",
    ):
        assert (d / name).is_file(), name
    parts = {k: read_dataset(d / "data" / k) for k in ("train", "holdout", "test")}
    ids = [set(map(str, p.patients)) for p in parts.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    syn = read_dataset(d / "synthetic", verify=True)
    assert len(syn) == 6 and all(str(s) == "synthetic:ddpm" for s in syn.source)
    paired = read_dataset(d / "synthetic_paired")
    rows = paired.meta["test_rows"]
    assert len(paired) == 4 == len(rows) and np.array_equal(
        np.asarray(paired.masks), np.asarray(parts["test"].masks)[rows]
    )
    import nibabel as nib

    assert nib.load(d / "synthetic_nifti" / "images.nii.gz").shape == (32, 32, 6)


def test_report(result):
    r = json.loads((result.run_dir / "report.json").read_text())
    assert r["schema_version"] == "1.0"
    assert (
        r["generator"]["name"] == "ddpm"
        and r["generator"]["dp"] is None
        and r["generator"]["distribution"] == "cmraudit"
    )
    assert r["generator"]["training_time_s"] > 0 and r["generator"]["params"]["steps"] == 6
    assert r["run"]["seed"] == 3 and r["run"]["seeds"]["sample"] == 4 and "torch" in r["run"]["versions"]
    assert set(r["run"]["data_fingerprints"]) == {"train", "holdout", "test", "synthetic", "synthetic_paired"}
    assert (
        r["data"]["synthetic"]["slices"] == 6
        and r["data"]["train"]["patients"] + r["data"]["holdout"]["patients"] + r["data"]["test"]["patients"] == 9
    )
    for name, _ in STAGES:
        assert r[name] == {"status": "skipped", "reason": "stage not implemented yet"} or "status" not in r[name]
    from cmraudit.report import validate_report

    validate_report(r)


def test_bad_run_config(tmp_path):
    with pytest.raises(UsageError, match="preset"):
        run(RunConfig(generator="ddpm", preset="huge", out=str(tmp_path / "x")))
    with pytest.raises(UsageError, match="dp-epsilon"):
        run(RunConfig(generator="noise", preset="micro", dp_epsilon=1.0, out=str(tmp_path / "y")))  # no supports_dp


def test_finished_run_not_overwritten(result):
    with pytest.raises(UsageError, match="--overwrite"):
        run(RunConfig(generator="ddpm", preset="micro", out=str(result.run_dir), progress=False))


def _log(path):
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_training_logs(result):
    """RUN/logs/<stage>.csv: the documented columns, one row per step of the micro preset, finite losses."""
    from cmraudit.generators.train_log import COLUMNS

    r = json.loads((result.run_dir / "report.json").read_text())
    logs = sorted(p.name for p in (result.run_dir / "logs").iterdir())
    import importlib.util

    tb = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []  # event files with the optional extra
    assert logs == ["image_model.csv", "mask_model.csv", "snapshots", *tb]  # snapshots: samples during training
    assert sorted(p.name for p in (result.run_dir / "logs" / "snapshots").iterdir()) == ["image_model.npz"]
    for stage in ("mask_model", "image_model"):
        head, rows = _log(result.run_dir / "logs" / f"{stage}.csv")
        assert tuple(head) == COLUMNS == ("step", "loss", "lr", "grad_norm", "epsilon", "img_per_s")
        assert [int(x[0]) for x in rows] == list(range(1, 7))  # micro: 6 steps, each logged
        for step, loss, lr, gn, eps, ips in rows:
            assert np.isfinite(float(loss)) and float(lr) > 0 and float(gn) > 0 and float(ips) > 0
            assert eps == ""  # not a DP run
    head, rows = _log(result.run_dir / "logs" / "image_model.csv")
    # the loss column is the loss the loop kept: its end mean agrees with the report's loss_end
    last = float(rows[-1][1])
    assert abs(last - r["generator"]["training"]["image"]["loss_end"]) < 1e-4 * max(1.0, abs(last))


def test_card_of_a_run_without_dp(result):
    """The card of a non-DP run says so, and carries the fingerprints and the copy-rate CI of its report."""
    from cmraudit.report.card import build_card

    r = json.loads((result.run_dir / "report.json").read_text())
    md = build_card(r)
    assert "Trained **without** differential privacy" in md and "ε = " not in md
    assert all(fp in md for fp in r["run"]["data_fingerprints"].values())
    rule = r["verdicts"]["rules"]["copy_rate"]
    assert (
        f"| copy_rate | {rule['verdict'].upper()} | {rule['value']:.4g} | [{rule['lower']:.4g}, {rule['upper']:.4g}] |"
        in md
    )


def test_automatic_threads_are_measured_again_as_each_stage_starts(tmp_path, monkeypatch):
    """cmraudit.cpu.refresh_threads runs at fit, sample and every audit stage (a moment of load at start-up once held
    a whole run at one thread: docs/benchmarks.md)."""
    import cmraudit.pipeline as pipeline
    from cmraudit.progress import STATUS

    seen: list[str] = []
    monkeypatch.setattr(pipeline, "refresh_threads", lambda: seen.append(STATUS.stage))
    run(RunConfig(generator="noise", preset="micro", out=str(tmp_path / "r"), n_samples=6, n_paired=4, device="cpu",
                  progress=False))
    assert seen == ["fit", "sample", *(name for name, _ in STAGES)]
