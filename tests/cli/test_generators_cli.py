"""Entry-point discovery: a broken plugin is listed with its error, never a crash; duplicates warn."""
import warnings

import pytest

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_PLUGIN, PluginError
from cmraudit.generators import registry


def _fake_dist(root, name, entry_points: str):
    d = root / f"{name}-0.1.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "fakebroken", "[cmraudit.generators]\nbrokengen = nonexistent_module_xyz:Gen\n")
    _fake_dist(tmp_path, "fakedup", "[cmraudit.generators]\nbrokengen = another_missing_mod:Gen\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield
    registry.refresh()


def test_broken_plugin_listed_not_crashing(fake_plugins, capsys):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rc = main(["generators", "list"])
    out = capsys.readouterr().out
    assert rc == 0
    line = next(x for x in out.splitlines() if x.startswith("broken: brokengen"))
    assert "fakebroken" in line and "nonexistent_module_xyz" in line
    dup = [x for x in w if "registered by both" in str(x.message)]
    assert dup and "fakebroken" in str(dup[0].message) and "fakedup" in str(dup[0].message)


def test_broken_plugin_raises_when_requested(fake_plugins, capsys):
    with pytest.raises(PluginError, match="failed to import"):
        registry.get_plugin("brokengen")
    rc = main(["generators", "check", "brokengen"])
    assert rc == EXIT_PLUGIN
    assert "brokengen" in capsys.readouterr().err


def test_unknown_generator(capsys):
    rc = main(["generators", "check", "no-such-generator"])
    assert rc == EXIT_PLUGIN
    err = capsys.readouterr().err
    assert "unknown generator 'no-such-generator'" in err and "installed generators:" in err
