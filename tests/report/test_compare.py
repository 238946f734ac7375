"""cmraudit compare: headline numbers, Pareto flags, files (issue 8, item 3)."""
from __future__ import annotations

import csv

import matplotlib.image as mpimg

from cmraudit.cli.main import main
from cmraudit.report import write_report
from cmraudit.report.compare import CompareRow, headline, pareto_flags
from .report_fixtures import est, make_report, variant


def test_headline_reads_the_right_numbers():
    row = headline(make_report("copycat"), run="r")
    assert row.generator == "copycat"
    assert row.frechet_distance == 3.0 and row.fd_space == "pixel" and row.coverage == 0.9
    assert abs(row.dice_synthetic - (0.75 + 0.72 + 0.80) / 3) < 1e-9
    assert row.copy_rate_upper == 0.98  # the registered space (the copy decision), not the max over pixel / domain
    assert row.mia_auc_upper == 1.0
    assert row.epsilon is None and row.verdict == "fail"


def test_headline_prefers_domain_space_and_handles_skips():
    rep = make_report("holdout")
    rep["fidelity"]["distribution"]["domain"] = {"frechet_distance": est(5.0, 4.0, 6.0, 100, "slice")}
    rep["utility"] = {"status": "skipped", "reason": "--no-utility"}
    row = headline(rep, run="r")
    assert row.fd_space == "domain" and row.frechet_distance == 5.0
    assert row.dice_synthetic is None


def test_pareto_flags():
    rows = [
        CompareRow("a", "a", frechet_distance=10, dice_synthetic=0.8, mia_auc_upper=0.6),
        CompareRow("b", "b", frechet_distance=12, dice_synthetic=0.7, mia_auc_upper=0.7),  # dominated by a
        CompareRow(
            "c", "c", frechet_distance=5, dice_synthetic=0.9, mia_auc_upper=0.99
        ),  # best fidelity/utility, worst privacy
        CompareRow("d", "d"),  # nothing computed
    ]
    assert pareto_flags(rows) == [True, False, True, False]


def test_cli_compare_writes_table_and_plot(tmp_path, capsys):
    runs = []
    for kind in ("copycat", "holdout"):
        d = tmp_path / kind
        write_report(d, make_report(kind))
        runs.append(str(d))
    dp = {"epsilon": 8.0, "delta": 1e-5, "accountant": "prv"}
    d = tmp_path / "ddpm_dp"
    write_report(d, variant(make_report("holdout"), lambda r: (r["generator"].update(name="ddpm", dp=dp))))
    runs.append(str(d / "report.json"))
    out = tmp_path / "cmp"
    assert main(["compare", *runs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fidelity · utility · privacy" in printed and "pareto.png" in printed.replace("\n", "")
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["run"] for r in rows] == ["copycat", "holdout", "ddpm_dp"]
    assert rows[2]["epsilon"] == "8.0"
    md = (out / "compare.md").read_text()
    assert md.count("\n") == 5 and "Pareto" in md
    img = mpimg.imread(out / "pareto.png")
    assert img.shape[0] > 100 and img.shape[1] > 300


def test_cli_compare_refuses_invalid_report(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text('{"schema_version": "1.0"}')
    assert main(["compare", str(tmp_path / "bad"), "--out", str(tmp_path / "o")]) == 2
    assert "bad/report.json" in capsys.readouterr().err


def test_compare_reads_every_run_in_one_shared_feature_space(tmp_path):
    """Fréchet distances of different spaces are not comparable: a run with an extra (preferred) space is read in
    the space all runs share, so the Pareto front compares like with like."""
    from cmraudit.report.compare import common_fd_space

    a = variant(make_report("holdout"), lambda r: r["fidelity"]["distribution"].update(
        domain={"frechet_distance": est(1.0, 0.5, 1.5, 100, "slice")}))  # domain 1.0, pixel 12.0
    b = variant(make_report("holdout"), lambda r: r["fidelity"]["distribution"]["pixel"].update(
        frechet_distance=est(2.0, 1.5, 2.5, 100, "slice")))  # pixel only: 2.0, better than a's pixel 12.0
    assert common_fd_space([a, b]) == "pixel" and common_fd_space([a]) == "domain"
    for name, rep in (("a", a), ("b", b)):
        write_report(tmp_path / name, rep)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "cmp" / "compare.csv"))}
    assert float(rows["a"]["frechet_distance"]) == 12.0 and float(rows["b"]["frechet_distance"]) == 2.0
    nothing = variant(b, lambda r: r["fidelity"]["distribution"].pop("pixel"))
    assert common_fd_space([a, nothing]) is None
    assert headline(a, run="a", fd_space=None).frechet_distance is None


def test_compare_rerun_is_all_or_nothing_and_spares_a_users_file(tmp_path, monkeypatch):
    """Interrupted while replacing an earlier comparison, the earlier one stays whole (was: a new compare.csv beside
    the old pareto.png); a file the user put in the output is never written beside nor replaced."""
    from cmraudit.report import plots

    runs = []
    for kind in ("copycat", "holdout"):
        write_report(tmp_path / kind, make_report(kind))
        runs.append(str(tmp_path / kind))
    out = tmp_path / "cmp"
    assert main(["compare", *runs, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "pareto_plot", interrupted)
    assert main(["compare", runs[0], "--out", str(out)]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cmp")]
    monkeypatch.undo()
    (out / "notes.txt").write_text("mine")
    assert main(["compare", runs[0], "--out", str(out)]) == 2
    assert (out / "notes.txt").read_text() == "mine" and (out / "compare.csv").read_bytes() == before["compare.csv"]
