"""The README's two commands are what CI and users run: keep them honest."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    return [
        line.strip() for b in blocks[:2] for line in b.strip().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_ci_runs_the_readme_test_command_verbatim():
    cmds = _readme_commands()
    test_cmd = next(c for c in cmds if "pytest" in c)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_readme_main_job_is_cmraudit_run():
    cmds = _readme_commands()
    assert any("cmraudit run --generator ddpm" in c for c in cmds)


def test_no_machine_paths_in_repo():
    bad = re.compile(
        "/(" + "|".join(["wo" + "rk", "fa" + "rm", "ro" + "ot"]) + ")/"
    )  # split so this file does not match itself
    offenders = []
    for p in ROOT.rglob("*"):
        if (
            p.is_file()
            and p.suffix in {".py", ".toml", ".md", ".cfg", ".yaml", ".yml"}
            and ".venv" not in p.parts
            and "site-packages" not in str(p)
        ):
            if bad.search(p.read_text(errors="ignore")):
                offenders.append(str(p.relative_to(ROOT)))
    assert not offenders, offenders
