"""docs/cli.md is generated from the typer app and up to date; the schema doc covers the schema."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from cmraudit.report.explain import MEANINGS
from cmraudit.report.policy import DEFAULT_RULES
from cmraudit.report.schema import ESTIMATE_KEYS, SCHEMA_VERSION, TOP_LEVEL

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _command_paths(cmd, path="cmraudit"):
    yield path
    for name, sub in (getattr(cmd, "commands", {}) or {}).items():
        yield from _command_paths(sub, f"{path} {name}")


def test_every_command_and_option_is_documented():
    from cmraudit.cli.main import app

    text = (DOCS / "cli.md").read_text()
    root = typer.main.get_command(app)
    for path in _command_paths(root):
        assert f"`{path}`" in text, f"{path} missing from docs/cli.md: run `python docs/gen_cli.py`"
    for opt in ("--include-real-images", "--policy", "--junit", "--out"):
        assert f"`{opt}`" in text


def test_cli_md_is_up_to_date():
    assert _gen().render() == (DOCS / "cli.md").read_text(), "docs/cli.md is stale: run `python docs/gen_cli.py`"


def test_schema_doc_covers_schema_and_policy():
    text = (DOCS / "report-schema.md").read_text()
    assert f'"{SCHEMA_VERSION}"' in text
    for key in (*TOP_LEVEL, *ESTIMATE_KEYS, *DEFAULT_RULES):
        assert f"`{key}`" in text, key
    assert set(ESTIMATE_KEYS) <= set(MEANINGS)  # every stable metric has a one-line meaning


def _resolve(tokens):
    """Walk ``cmraudit a b …`` down the command tree; returns (command, the option names it and the root accept)."""
    from cmraudit.cli.main import app

    root = typer.main.get_command(app)
    opts = {o for p in root.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
    cmd = root
    for tok in tokens:
        if tok.startswith("-"):
            continue
        subs = getattr(cmd, "commands", None)
        if not subs:
            break
        if tok not in subs:
            return None, opts
        cmd = subs[tok]
        opts |= {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
    return cmd, opts


def _doc_commands(path):
    import re

    text = path.read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].split(";")[0].strip()
            for part in line.split("&&"):
                words = part.split()
                for i, w in enumerate(words):
                    if w.endswith("cmraudit") and i + 1 < len(words) and not words[i + 1].startswith((".", "/")):
                        yield words[i + 1 :]


def test_quickstart_and_example_commands_exist():
    import pytest
    from cmraudit.cli.main import app

    if "run" not in typer.main.get_command(app).commands:
        pytest.skip("`cmraudit run` is not registered yet (pipeline issue); the check runs once it is")
    problems = []
    for doc in (DOCS / "quickstart.md", ROOT / "examples" / "ci-gate" / "README.md"):
        for words in _doc_commands(doc):
            cmd, opts = _resolve(words)
            if cmd is None:
                problems.append(f"{doc.name}: unknown command {' '.join(words)}")
                continue
            problems += [
                f"{doc.name}: unknown option {w} in {' '.join(words)}"
                for w in words
                if w.startswith("--") and w not in opts
            ]
    assert not problems, problems


def test_ci_gate_workflow_runs_audit_and_gate():
    wf = (ROOT / "examples" / "ci-gate" / "privacy-gate.yml").read_text()
    assert "cmraudit run --generator ddpm --preset quick" in wf  # not --quiet: the CI log shows progress lines
    # a quick run is too small for policy.toml (always exit 1): the shipped workflow gates it on the pilot policy
    assert "cmraudit gate audit-run/report.json --policy examples/ci-gate/pilot-policy.toml --junit" in wf
    assert "\t" not in wf  # YAML forbids tabs
    assert (ROOT / "examples" / "ci-gate" / "policy.toml").is_file()
    assert (ROOT / "examples" / "ci-gate" / "pilot-policy.toml").is_file()
