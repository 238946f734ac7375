"""docs/design.md is the design reference: code cites it (not the old DESIGN.md) and every path it names exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
OLD = "DESIGN" + ".md"  # split so this file does not cite it
SCANNED = ("cmraudit", "plugins", "examples", "bench", "tests", "docs")
ROOT_ENTRIES = ("cmraudit", "plugins", "examples", "bench", "tests", "docs", ".ci", "pyproject.toml", "README.md")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SKIP = {
    ".git",
    ".venv",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
}  # build outputs, not the repository's own files


def _ignored(p: Path, root: Path) -> bool:
    parts = p.relative_to(root).parts
    return any(x in SKIP or x.endswith(".egg-info") for x in parts)


def old_design_citations(root: Path) -> list[str]:
    """``file:line`` of every line under the scanned folders (and README) that cites the old design file."""
    files = [root / "README.md"] + [p for d in SCANNED for p in sorted((root / d).rglob("*"))
                                    if p.suffix in {".py", ".md"} and not _ignored(p, root)]
    hits = []
    for p in files:
        if not p.is_file() or p.resolve() == Path(__file__).resolve() or p.relative_to(root) == Path("docs/design.md"):
            continue  # design.md itself says which file it replaces
        for i, line in enumerate(p.read_text(errors="ignore").splitlines(), 1):
            if OLD in line:
                hits.append(f"{p.relative_to(root)}:{i}")
    return hits


def _suffix_exists(root: Path, rel: str) -> bool:
    rel = rel.rstrip("/")
    return any(
        str(p.relative_to(root)).endswith("/" + rel) for p in root.rglob(Path(rel).name) if not _ignored(p, root)
    )


def missing_paths(text: str, *, root: Path, doc_dir: Path) -> list[str]:
    """Links and inline-code paths of a markdown page that name no file or folder of the repository."""
    bad = []
    prose = FENCE.sub("", text)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc_dir / target.split("#")[0]).exists():
            bad.append(f"link {target}")
    for code in re.findall(r"`([^`\s]+)`", prose):
        path = code.split(":")[0]
        if path.split("/")[0] in ROOT_ENTRIES:
            if not (root / path).exists():
                bad.append(f"path {code}")
        elif "/" in path and re.fullmatch(r"[\w./-]+", path) and (path.endswith("/") or path.endswith(".py")):
            if not _suffix_exists(root, path):  # package-relative, e.g. mia/metrics.py
                bad.append(f"path {code}")
    # the layout block of § 3: top-level names are repository entries, indented names live under cmraudit/
    layout = next((b for b in FENCE.findall(text) if "pipeline.py" in b), "")
    for line in layout.splitlines()[1:-1]:
        name = line.split()[0] if line.strip() else ""
        if not (name.endswith("/") or name.endswith(".py")):
            continue
        where = root / "cmraudit" / name if line.startswith(" ") else root / name
        if not where.exists():
            bad.append(f"layout {name}")
    return bad


def test_no_code_or_doc_cites_the_old_design_file():
    hits = old_design_citations(ROOT)
    assert not hits, f"cite docs/design.md (same § numbers) instead of {OLD}: {hits}"


def test_design_doc_names_only_existing_paths():
    text = DESIGN.read_text()
    assert "## 3. Layout and layers" in text and "## 11. Invariants" in text
    bad = missing_paths(text, root=ROOT, doc_dir=DESIGN.parent)
    assert not bad, f"docs/design.md names paths that do not exist: {bad}"


def test_design_doc_is_listed_in_index_and_readme():
    assert "(design.md)" in (ROOT / "docs" / "index.md").read_text()
    assert "docs/design.md" in (ROOT / "README.md").read_text()


def test_checkers_catch_planted_mistakes(tmp_path):
    (tmp_path / "cmraudit" / "privacy").mkdir(parents=True)
    (tmp_path / "cmraudit" / "privacy" / "dp.py").write_text(f'"""DP-SGD ({OLD} § 6)."""\n')
    (tmp_path / "README.md").write_text("readme\n")
    (tmp_path / "docs").mkdir()
    assert old_design_citations(tmp_path) == ["cmraudit/privacy/dp.py:1"]
    page = ("See [privacy](privacy.md) and `cmraudit/privacy/dp.py`, `privacy/dp.py`, `cmraudit/gone.py`, "
            "`mia/none.py`.\n```\ncmraudit/\n  privacy/\n  pipeline.py\n```\n")
    bad = missing_paths(page, root=tmp_path, doc_dir=tmp_path / "docs")
    assert bad == ["link privacy.md", "path cmraudit/gone.py", "path mia/none.py", "layout pipeline.py"]
