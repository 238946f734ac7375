"""The front door (``import cmraudit``), the typed results and their views, and examples/api.py end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cmraudit
from cmraudit.errors import UsageError
from cmraudit.results import Report, section_of

from .report.report_fixtures import make_report

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_lazy_and_exports_the_front_door():
    code = ("import sys, cmraudit; heavy = [m for m in ('torch', 'monai', 'cmraudit.pipeline') if m in sys.modules]; "
            "print(heavy); print(cmraudit.run.__module__, cmraudit.Dataset.__name__, cmraudit.Report.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "cmraudit.api Dataset Report"]
    for name in ("run", "audit", "evaluate", "read_dataset", "Dataset", "RunConfig", "AuditRunConfig",
                 "EvaluateConfig", "Report", "RunResult", "PrivacySection"):
        assert name in cmraudit.__all__ and callable(getattr(cmraudit, name)) or name == "PrivacySection"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cmraudit.nope  # noqa: B018


@pytest.mark.parametrize("kind", ["holdout", "copycat", "skipped"])
def test_report_round_trips_exactly(kind):
    d = json.loads(json.dumps(make_report(kind)))
    rep = Report.from_dict(d)
    assert rep.to_dict() == d and dict(rep) == d  # the typed report is its JSON, key for key
    assert rep["privacy"]["mia"] == d["privacy"]["mia"] and len(rep) == len(d)
    assert rep.verdicts == d["verdicts"] and rep.overall == d["verdicts"]["overall"]


def test_views_summary_rows_html_and_frame(monkeypatch):
    rep = Report.from_dict(json.loads(json.dumps(make_report("copycat"))))
    text = rep.summary()
    assert text.splitlines()[0] == f"copycat: overall verdict {rep.overall}" and "train 20 patients/160 slices" in text
    assert all(f"{c}: {v['verdict']}" in text for c, v in rep.verdicts["checks"].items())
    rows = rep.rows()
    copy = [r for r in rows if r["path"] == "privacy.feature_spaces.pixel.copy_detection.copy_rate"]
    assert copy and copy[0]["value"] == 0.9 and copy[0]["unit"] == "slice" and copy[0]["status"] == "done"
    assert any(r["status"] == "skipped" and "no loss" in r["reason"] for r in rows)
    assert "<table>" in rep._repr_html_() and "copycat" in rep._repr_html_()
    monkeypatch.setitem(sys.modules, "pandas", None)  # pandas absent: one clear error
    with pytest.raises(UsageError, match="needs pandas"):
        rep.to_frame()


def test_to_frame_with_pandas():
    pd = pytest.importorskip("pandas")
    frame = Report.from_dict(make_report("holdout")).to_frame()
    assert isinstance(frame, pd.DataFrame) and {"path", "value", "ci_low", "ci_high", "status"} <= set(frame.columns)


def test_training_and_dp_sections_round_trip():
    gen = {"name": "ddpm", "params": {"steps": 6}, "tags": {"has_loss": True},
           "training": {"mask": {"steps": 6, "loss_end": 0.9, "dp": None}, "image": {"steps": 6}, "n_patients": 5},
           "dp": {"per_stage": {"mask": 4.0}, "epsilon": 8.0, "delta": 1e-5, "accountant": "prv"}}
    d = {**make_report("holdout"), "generator": gen}
    rep = Report.from_dict(d)
    assert rep.to_dict() == d and rep.generator.dp.epsilon == 8.0 and rep.generator.tags == {"has_loss": True}
    tr = rep.generator.training
    assert set(tr.stages) == {"mask", "image"} and tr.info == {"n_patients": 5} and tr.to_dict() == gen["training"]


def test_sections_and_skipped_once():
    sec = section_of("utility", {"status": "skipped", "reason": "no masks"})
    assert sec.is_skipped and sec.reason == "no masks" and sec.status == "skipped"
    assert section_of("privacy", {"mia": {"loss": {}}, "feature_spaces": {}}).mia == {"loss": {}}


def test_front_door_rejects_bad_config(tmp_path):
    with pytest.raises(UsageError, match="unexpected keyword argument 'colour'"):
        cmraudit.run(generator="ddpm", colour="red")
    with pytest.raises(UsageError, match="expected a RunConfig"):
        cmraudit.run({"generator": "ddpm"})


def test_dataset_repr_is_one_line():
    ds = cmraudit.Dataset(images=np.zeros((6, 8, 8), np.float32), masks=np.zeros((6, 8, 8), np.uint8),
                          patient_id=["a", "a", "b", "b", "c", "c"], vendor=["A", "A", "B", "B", "A", "A"])
    assert repr(ds) == "Dataset(6 slices, 3 patients, 8x8, vendors A,B, source real)"


def test_examples_api_runs(tmp_path):
    """examples/api.py: a micro run and an audit through the front door (the user's view of the API)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}", "OMP_NUM_THREADS": "1",
           "CMRAUDIT_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "api.py"), str(tmp_path)], capture_output=True,
                         text=True, timeout=900, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert text.startswith("ddpm: overall verdict ") and "privacy: done" in text
    assert "Dataset(80 slices, 5 patients, 32x32" in text
    assert "unknown" not in text.split("verdict:")[0]
    run = json.loads((tmp_path / "run" / "report.json").read_text())
    aud = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert run["run"]["command"] == "cmraudit run" and aud["run"]["command"] == "cmraudit audit"
    assert aud["run"]["device"] == run["run"]["device"]  # the real device, not a hard-coded "cpu"
    assert aud["generator"]["name"] == "ddpm" and aud["generator"]["entry_point"] == run["generator"]["entry_point"]
    assert set(aud["run"]) >= set(run["run"]) - {"config"}  # one builder: the same provenance keys
