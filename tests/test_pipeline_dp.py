"""`cmraudit run --dp-epsilon`: the report's generator.dp block; non-DP plugins refuse the option (exit 2)."""
import csv
import json

import pytest

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_DATA, EXIT_USAGE
from cmraudit.generators.checkpoint import load_generator


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    """One DP micro run shared by the tests of this module (budget, logs, model card, canary DP audit)."""
    out = tmp_path_factory.mktemp("dp") / "run"
    rc = main(["--quiet", "run", "--generator", "ddpm", "--preset", "micro", "--dp-epsilon", "8", "--dp-delta", "1e-3",
               "--n-samples", "4", "--n-paired", "2", "--device", "cpu", "--dp-audit-canaries", "6",
               "--out", str(out)])
    assert rc == 0
    return out


def test_run_micro_under_dp_reports_the_budget(dp_run):
    out = dp_run
    report = json.loads((out / "report.json").read_text())
    dp = report["generator"]["dp"]
    # the joint accounting over both stages spends the budget asked for, within 1 % (issue 19)
    assert dp is not None and 7.92 <= dp["epsilon"] <= 8.0 and dp["delta"] <= 1e-3 * (1 + 1e-9)
    assert dp["composition"].startswith("prv accountant over the joint history") and dp["target_epsilon"] == 8.0
    assert dp["unit"] == "patient" and dp["accountant"] == "prv"
    assert set(dp["stages"]) == {"mask_model", "image_model"} and dp["split"] == {"mask_model": 0.5, "image_model": 0.5}
    for s in dp["stages"].values():
        assert 0 < s["epsilon"] < dp["epsilon"] and s["n_patients"] == report["data"]["train"]["patients"]
    assert load_generator(out / "model").dp_ == dp  # the saved model keeps its budget
    assert report["run"]["config"]["dp_epsilon"] == 8.0
    from cmraudit.report import validate_report

    validate_report(report)  # the DP block fits the report schema


def test_dp_training_logs_track_epsilon(dp_run):
    """Under DP each stage's log carries the ε spent so far: non-decreasing, ending at the stage's reported ε."""
    stages = json.loads((dp_run / "report.json").read_text())["generator"]["dp"]["stages"]
    for stage, budget in stages.items():
        with open(dp_run / "logs" / f"{stage}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["step"]) for r in rows] == list(range(1, budget["steps"] + 1))
        eps = [float(r["epsilon"]) for r in rows]
        assert all(0 < a <= b for a, b in zip(eps, eps[1:])) and abs(eps[-1] - budget["epsilon"]) < 1e-3


def test_fit_micro_at_epsilon_1_with_a_stage_split(tmp_path):
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.dataset import write_dataset

    data = tmp_path / "train"
    write_dataset(make_phantom(PhantomConfig(subjects=6, slices=2, size=32), seed=0), data)
    rc = main(
        [
            "--quiet",
            "fit",
            "--generator",
            "ddpm",
            "--preset",
            "micro",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--device",
            "cpu",
            "--dp-epsilon",
            "1",
            "--dp-delta",
            "1e-3",
            "--dp-split",
            "mask=0.3,image=0.7",
        ]
    )
    assert rc == 0
    dp = load_generator(tmp_path / "m").dp_
    assert 0.99 <= dp["epsilon"] <= 1.0 and dp["split"] == {"mask_model": 0.3, "image_model": 0.7}
    # the image stage has the larger share of the budget, so less noise than the mask stage (same q and steps here)
    st = dp["stages"]
    assert st["image_model"]["noise_multiplier"] < st["mask_model"]["noise_multiplier"]


def test_dp_split_names_the_missing_stage(tmp_path, capsys):
    assert main(["run", "--generator", "ldm", "--preset", "micro", "--dp-epsilon", "8", "--dp-split", "mask=1,image=1",
                 "--device", "cpu", "--out", str(tmp_path / "s")]) == EXIT_USAGE
    assert "missing: autoencoder" in capsys.readouterr().err
    assert not (tmp_path / "s" / "report.json").exists()


def test_non_dp_plugin_refuses_dp_epsilon(tmp_path, capsys):
    assert (
        main(["run", "--generator", "copycat", "--preset", "micro", "--dp-epsilon", "8", "--out", str(tmp_path / "c")])
        == EXIT_USAGE
    )
    err = capsys.readouterr().err
    assert "--dp-epsilon" in err and "copycat" in err
    assert not (tmp_path / "c" / "report.json").exists()


def test_bad_dp_options_are_usage_errors(tmp_path, capsys):
    assert main(["run", "--generator", "ddpm", "--preset", "micro", "--dp-epsilon", "8", "--accountant", "gdp",
                 "--out", str(tmp_path / "d")]) == EXIT_USAGE
    assert "--accountant" in capsys.readouterr().err


# ------------------------------------------------------------------ cmraudit card (on the same DP micro run)
def _sections(md: str) -> tuple[list[str], list[list[str]]]:
    """(h2 headings, header rows of every table) of a Markdown text, parsed by markdown-it."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    heads = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]
    tables, cur, in_head = [], None, False
    for t in tokens:
        if t.type == "thead_open":
            cur, in_head = [], True
        elif t.type == "thead_close":
            tables.append(cur)
            in_head = False
        elif in_head and t.type == "inline":
            cur.append(t.content)
    return heads, tables


def test_card_of_a_dp_run(dp_run, capsys):
    report = json.loads((dp_run / "report.json").read_text())
    assert main(["card", str(dp_run)]) == 0
    md = (dp_run / "card.md").read_text()
    assert "card.md" in capsys.readouterr().out
    dp = report["generator"]["dp"]
    assert f"ε = {dp['epsilon']:.4g}, δ = {dp['delta']:.4g} (prv accountant)" in md
    for split, fp in report["run"]["data_fingerprints"].items():
        n = report["data"][split]
        assert fp in md and f"| {split} | {n.get('patients', '—')} | {n['slices']} |" in md
    words = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "not_required": "not required"}
    assert f"Overall: **{words[report['verdicts']['overall']]}**" in md
    for group, check in report["verdicts"]["checks"].items():
        assert f"| {group.replace('_', ' ')} | {words[check['verdict']]} |" in md
    for name, rule in report["verdicts"]["rules"].items():
        if rule["status"] != "off" and rule["upper"] is not None and rule.get("lower") is not None:
            assert f"[{rule['lower']:.4g}, {rule['upper']:.4g}]" in md, name  # the CI the gate compared
        if rule.get("hint"):
            assert rule["hint"] in md  # underpowered: the size needed
    assert "**Smoke test**" in md  # micro preset
    heads, tables = _sections(md)
    assert heads == ["Intended use", "Data", "Generator", "Differential privacy", "Privacy verdicts",
                     "Fidelity and utility", "Known limitations", "What may and may not be shared"]
    assert ["split", "patients", "slices", "fingerprint"] in tables
    assert ["stage", "ε", "noise σ", "sample rate q", "steps", "clip C"] in tables
    assert ["rule", "verdict", "point", "95 % CI", "budget", "unit", "measured at"] in tables
    share = md.split("## What may and may not be shared")[1]
    assert "| privacy/top_pairs_*.png | yes | no |" in share and "| data/ | yes | no |" in share
    assert "| report.html | no | yes |" in share
    # a rerun replaces its own card; --out to a file cmraudit did not write is refused (exit 2), the file kept
    assert main(["card", str(dp_run)]) == 0
    foreign = dp_run.parent / "notes.md"
    foreign.write_text("mine")
    assert main(["card", str(dp_run), "--out", str(foreign)]) == EXIT_USAGE and foreign.read_text() == "mine"
    assert main(["card", str(dp_run / "report.json"), "--out", str(dp_run.parent / "c.md")]) == 0
    def body(text):
        return [line for line in text.splitlines() if not line.startswith("Built by cmraudit")]  # the time differs

    assert body((dp_run.parent / "c.md").read_text()) == body(md)


def test_card_without_a_report_exits_4_naming_the_file(tmp_path, capsys):
    assert main(["card", str(tmp_path)]) == EXIT_DATA
    err = capsys.readouterr().err
    assert str(tmp_path / "report.json") in err and "no such report" in err
    assert not (tmp_path / "card.md").exists()


def test_card_marks_a_report_that_names_patients(dp_run):
    """A report naming a training patient (a copy flagged per patient): report.json/html no longer 'shareable'."""
    from cmraudit.report.card import build_card, split_patient_ids

    report = json.loads((dp_run / "report.json").read_text())
    ids = split_patient_ids(dp_run)
    assert len(ids) == sum(report["data"][k]["patients"] for k in ("train", "holdout", "test"))
    assert "| report.json | no | yes |" in build_card(report, patient_ids=ids)  # this run names nobody
    report["privacy"]["feature_spaces"]["registered"]["copy_detection"]["flagged_by_patient"] = [{"patient_id": ids[0]}]
    md = build_card(report, patient_ids=ids)
    assert "| report.json | pseudonymous ids of 1 training patient(s)" in md and "| report.json | no | yes |" not in md


def test_run_writes_the_dp_audit_block_and_the_gate_reads_it(dp_run, capsys):
    """`run --dp-audit-canaries`: report.json holds the canary audit; the gate's dp_audit rule evaluates it."""
    raw = (dp_run / "report.json").read_text()
    report = json.loads(raw)
    a = report["dp_audit"]
    assert a["m"] == 6 and a["unit"] == "patient" and a["attack"] == "grad_norm"  # the strongest ddpm offers
    assert 7.92 <= a["epsilon_claimed"] <= 8.0  # the audited training's own joint accountant
    assert 0 <= a["epsilon_lower_bound"] <= a["epsilon_claimed"] and not a["falsified"]
    assert [c["patient_id"] for c in a["canaries"]] == [f"canary-{i:02d}" for i in range(1, 7)]
    assert "phantom-" not in json.dumps(a)  # no patient of the run is named in the shareable report
    assert report["run"]["config"]["dp_audit_canaries"] == 6 and "dp_audit" in report["run"]["timings_s"]
    rule = report["verdicts"]["rules"]["dp_audit"]  # the gate's rule, evaluated when the report was built
    assert rule["status"] == "pass" and rule["value"] == a["epsilon_lower_bound"], rule
    junit = dp_run.parent / "gate.xml"
    rc = main(["gate", str(dp_run / "report.json"), "--junit", str(junit)])
    assert rc in (0, 1)  # other rules may fail on a micro run; this test is about dp_audit
    xml = junit.read_text()
    assert 'name="dp_audit"' in xml and "dp_audit (" not in xml  # present and not failed


def test_dp_audit_canaries_beyond_the_data_is_a_usage_error(tmp_path, capsys):
    rc = main(["--quiet", "run", "--generator", "ddpm", "--preset", "micro", "--dp-audit-canaries", "50",
               "--out", str(tmp_path / "r")])
    assert rc == EXIT_USAGE and "--dp-audit-canaries 50" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_run_micro_at_epsilon_1_spends_the_budget(tmp_path):
    """`run --dp-epsilon 1`: the joint accounting over both stages lands within 1 % below the ε asked for."""
    out = tmp_path / "run"
    rc = main(["--quiet", "run", "--generator", "ddpm", "--preset", "micro", "--dp-epsilon", "1", "--dp-delta", "1e-3",
               "--n-samples", "4", "--n-paired", "0", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    dp = json.loads((out / "report.json").read_text())["generator"]["dp"]
    assert 0.99 <= dp["epsilon"] <= 1.0 and dp["target_epsilon"] == 1.0
