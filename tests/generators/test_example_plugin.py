"""The example third-party plugin: installed like any package, found through its entry point, conformant."""
import subprocess
import sys
from pathlib import Path

import pytest

from cmraudit.cli.main import main
from cmraudit.generators import registry
from cmraudit.testing import check_generator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install the example into a private target directory (the venv is left untouched)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip install of the example plugin failed: {proc.stderr[-2000:]}")
    sys.path.insert(0, str(target))
    registry.refresh()
    yield target
    sys.path.remove(str(target))
    for mod in [m for m in sys.modules if m.startswith("cmraudit_example_plugin")]:
        del sys.modules[mod]
    registry.refresh()


def test_found_through_entry_point(installed, capsys):
    info = registry.get_plugin("example-labelmean")
    assert info.distribution == "cmraudit-example-plugin" and info.version == "0.1.0"
    assert Path(sys.modules[info.cls.__module__].__file__).is_relative_to(installed)
    assert main(["generators", "list"]) == 0
    assert "example-labelmean" in capsys.readouterr().out


def test_conformance_suite_passes(installed, capsys):
    results = check_generator(registry.get_generator_class("example-labelmean"))
    assert not [r for r in results if r.failed], [r.to_dict() for r in results if r.failed]
    skipped = {r.name: r.message for r in results if r.skipped}  # inapplicable by its tags: skipped with a reason
    assert set(skipped) == {"check_loss", "check_hooks"} and "has_loss" in skipped["check_loss"], skipped
    passed = {r.name for r in results if r.passed}
    assert passed >= {"check_sample_n", "check_sample_masks", "check_save_load_roundtrip"}
    assert main(["generators", "check", "example-labelmean"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_conformance_suite_catches_a_broken_generator(installed):
    cls = registry.get_generator_class("example-labelmean")

    class Forgetful(cls):  # violates the contract: sample ignores its seed, load drops the fit
        def sample(self, *, masks=None, n=None, seed):
            return super().sample(masks=masks, n=n, seed=0)

    failed = {r.name for r in check_generator(Forgetful) if r.failed}
    assert "check_seed_determinism" in failed


def test_imports_only_the_plugin_kit():
    """The template imports cmraudit only through cmraudit.generators (the plugin kit) or cmraudit.data."""
    import ast

    src = EXAMPLE / "src" / "cmraudit_example_plugin" / "generator.py"
    mods = {n.module for n in ast.walk(ast.parse(src.read_text())) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(ast.parse(src.read_text())) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in mods if m and m.split(".")[0] == "cmraudit"}
    assert ours and ours <= {"cmraudit.generators", "cmraudit.data"}, ours
