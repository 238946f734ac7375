"""The layer rules of docs/design.md § 3, checked by an AST walk over cmraudit/ (every import, module level and
inside functions): generators and privacy never import each other (both may use the low package cmraudit.dp, which
imports neither); few function-level imports of the project's own modules; no module over 350 lines; the CLI and
``import cmraudit.pipeline`` start without torch, matplotlib, SciPy, scikit-learn, FAISS, MONAI or nibabel."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cmraudit"
MAX_LINES = 350
MAX_DEFERRED_OWN_IMPORTS = 20
#: the grep of docs/design.md § 3.3, for comparison with the AST count
GREP = re.compile(r"^\s+from \.|^\s+(import|from) cmraudit")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, line, at module level?) for every import of ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    mod = _module(path)
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for f in funcs for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno, id(node) not in inner
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            for t in [target, *names]:
                yield t, node.lineno, id(node) not in inner


FILES = sorted(PKG.rglob("*.py"))


def _own(name: str) -> bool:
    return name == "cmraudit" or name.startswith("cmraudit.")


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_generators_and_privacy_do_not_import_each_other():
    bad = []
    for f in FILES:
        mod = _module(f)
        for target, line, _ in _imports(f):
            for a, b in (("cmraudit.generators", "cmraudit.privacy"), ("cmraudit.privacy", "cmraudit.generators")):
                if _in(mod, a) and _in(target, b):
                    bad.append(f"{f.relative_to(ROOT)}:{line} imports {target}")
            if _in(mod, "cmraudit.dp") and (_in(target, "cmraudit.generators") or _in(target, "cmraudit.privacy")):
                bad.append(f"{f.relative_to(ROOT)}:{line} (the DP layer) imports {target}")
    assert not bad, "layer rule broken (docs/design.md § 3.2):\n" + "\n".join(sorted(set(bad)))


def test_few_function_level_imports_of_the_project():
    deferred = sorted({(str(f.relative_to(ROOT)), line) for f in FILES for t, line, top in _imports(f)
                       if not top and _own(t)})
    grep = [(str(f.relative_to(ROOT)), i) for f in FILES for i, text in enumerate(f.read_text().splitlines(), 1)
            if GREP.search(text)]
    listing = "\n".join(f"{p}:{n}" for p, n in deferred)
    assert len(deferred) <= MAX_DEFERRED_OWN_IMPORTS, f"{len(deferred)} function-level imports of cmraudit:\n{listing}"
    assert len(grep) <= MAX_DEFERRED_OWN_IMPORTS, f"grep counts {len(grep)}: {grep}"


def test_no_module_over_350_lines():
    long = {str(f.relative_to(ROOT)): n for f in FILES if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_planted_mistakes_are_caught(tmp_path, monkeypatch):
    """The walk sees a deferred import and a generators → privacy tie (guards the checker itself)."""
    pkg = tmp_path / "cmraudit" / "generators"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from ..privacy import audit\n    return audit\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = list(_imports(pkg / "bad.py"))
    assert ("cmraudit.privacy", 2, False) in found and ("cmraudit.privacy.audit", 2, False) in found


@pytest.mark.parametrize("module", ["cmraudit.cli.main", "cmraudit.pipeline", "cmraudit.privacy", "cmraudit.dp",
                                    "cmraudit.registry"])
def test_light_imports(module):
    """Heavy third-party packages are imported on first use, never by importing these (the CLI starts without)."""
    heavy = ("torch", "matplotlib", "scipy", "sklearn", "faiss", "monai", "nibabel")
    code = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
