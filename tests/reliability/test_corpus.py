"""Issue 15: every bad input gives the documented exit code, one line naming the file or option, no traceback,
and leaves every input byte-identical and nothing behind (directory listings compared before and after)."""

from __future__ import annotations

import pytest

from .cases import CASES
from .conftest import cli, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_corpus_size():
    assert len(CASES) >= 80 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, assets, tmp_path, capsys, request):
    if case.plugins:
        request.getfixturevalue("hostile_plugins")
    fmt = {k: str(v) for k, v in assets.items()} | {"t": str(tmp_path)}
    argv = case.argv.format(**fmt).split()
    before_inputs, before_t = snapshot(assets["root"]), snapshot(tmp_path)
    rc, out, err = cli(argv, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == case.code, f"exit {rc}, expected {case.code}; stderr: {err!r}"
    assert "Traceback" not in err + out
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    for name in case.names:
        assert name.format(**fmt) in lines[0], f"{name.format(**fmt)!r} not named in {lines[0]!r}"
    assert snapshot(assets["root"]) == before_inputs, "an input was changed, removed or added to"
    assert snapshot(tmp_path) == before_t, "something was left behind"
