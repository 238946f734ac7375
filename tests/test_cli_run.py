"""cmraudit run / fit / sample from the command line (exit codes, files, one-line errors)."""
import json

from cmraudit.cli.main import main
from cmraudit.data.dataset import read_dataset, write_dataset
from cmraudit.errors import EXIT_DATA, EXIT_PLUGIN, EXIT_USAGE
from cmraudit.testing import make_toy_dataset


def test_run_micro(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "--quiet",
            "run",
            "--generator",
            "ddpm",
            "--preset",
            "micro",
            "--out",
            str(out),
            "--n-samples",
            "4",
            "--n-paired",
            "2",
            "--device",
            "cpu",
            "--set",
            "steps=3",
            "--set",
            "mask_steps=2",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "report.json" in text
    r = json.loads((out / "report.json").read_text())
    # every audit stage ran end to end (none reported as skipped) and the report carries their numbers
    for stage in ("privacy", "fidelity", "utility"):
        assert r[stage].get("status") != "skipped", (stage, r[stage])
    assert r["privacy"]["feature_spaces"]["pixel"]["copy_detection"]["copy_rate"]["unit"] == "slice"
    for attack in ("loss", "fcre"):  # white-box attacks on the built-in DDPM (loss and the prediction_pair hook)
        assert r["privacy"]["mia"][attack].get("status") != "skipped", r["privacy"]["mia"][attack]
    assert (out / "report.html").stat().st_size > 10_000
    assert r["generator"]["params"]["steps"] == 3 and r["data"]["synthetic"]["slices"] == 4
    assert (out / "samples.png").stat().st_size > 1000


def test_fit_then_sample(tmp_path, capsys):
    write_dataset(make_toy_dataset(n_patients=3, slices=2, size=32), tmp_path / "train")
    rc = main(
        [
            "--quiet",
            "fit",
            "--generator",
            "ddpm",
            "--preset",
            "micro",
            "--device",
            "cpu",
            "--data",
            str(tmp_path / "train"),
            "--out",
            str(tmp_path / "model"),
            "--set",
            "steps=2",
            "--set",
            "mask_steps=2",
        ]
    )
    assert rc == 0, capsys.readouterr()
    assert (tmp_path / "model" / "image.safetensors").is_file() and (
        tmp_path / "model.work" / "image" / "train_state.pt"
    ).is_file()
    rc = main(["sample", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "syn"), "--n", "3", "--seed", "1"])
    assert rc == 0
    assert (
        len(read_dataset(tmp_path / "syn")) == 3
        and (tmp_path / "syn.png").is_file()
        and (tmp_path / "syn_nifti" / "masks.nii.gz").is_file()
    )
    rc = main(
        [
            "sample",
            "--model",
            str(tmp_path / "model"),
            "--out",
            str(tmp_path / "paired"),
            "--masks",
            str(tmp_path / "train"),
        ]
    )
    assert rc == 0 and len(read_dataset(tmp_path / "paired")) == 6


def test_cli_errors(tmp_path, capsys):
    assert main(["run", "--generator", "no-such-gen", "--out", str(tmp_path / "a")]) == EXIT_PLUGIN
    assert "unknown generator 'no-such-gen'" in capsys.readouterr().err
    assert (
        main(["run", "--generator", "noise", "--dp-epsilon", "3", "--out", str(tmp_path / "b")]) == EXIT_USAGE
    )  # no supports_dp
    assert "--dp-epsilon" in capsys.readouterr().err
    assert main(["sample", "--model", str(tmp_path), "--out", str(tmp_path / "c")]) == EXIT_USAGE
    assert (
        main(
            [
                "fit",
                "--generator",
                "ddpm",
                "--data",
                str(tmp_path / "train"),
                "--out",
                str(tmp_path / "m"),
                "--set",
                "steps",
            ]
        )
        == EXIT_USAGE
    )
    # out inside the model folder: refused (exit 2); a folder that is not a model: exit 4
    assert main(["sample", "--model", str(tmp_path), "--out", str(tmp_path / "d"), "--n", "2"]) == EXIT_USAGE
    assert main(["sample", "--model", str(tmp_path), "--out", str(tmp_path.parent / "d15"), "--n", "2"]) == EXIT_DATA


def test_threads_option_sets_torch_threads(capsys, monkeypatch):
    import torch

    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS/OpenMP pools on exit
        try:
            assert main(["--threads", "1", "generators"]) == 0
            assert torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
            monkeypatch.setenv("CMRAUDIT_THREADS", "2")
            assert main(["generators"]) == 0
            assert torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(before)
    assert main(["--threads", "0", "generators"]) == EXIT_USAGE
    assert "--threads" in capsys.readouterr().err


def test_micro_preset_in_help_and_errors(capsys):
    """`micro` is named in `run --help` and in the error for an unknown preset (issue 17)."""
    assert main(["run", "--help"]) == 0
    assert "micro (smoke test" in capsys.readouterr().out
    assert main(["run", "--generator", "ddpm", "--preset", "tiny", "--out", "x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--preset 'tiny'" in err and "micro" in err and "quick" in err and "paper" in err
