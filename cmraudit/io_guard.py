"""Output-path guard and atomic write helpers shared by every command (docs/cli.md#outputs).

The rules, in one place:

* an output may never be, contain, or lie inside one of the command's inputs (:func:`check_output`);
* an existing non-empty directory is only ever replaced or written into when cmraudit wrote it,
  recognised by its marker file :data:`MARKER`; a regular file is never replaced by a directory;
* every file or directory is written to a temporary sibling and renamed into place; on any failure
  (disk full, Ctrl-C) the temporary is removed and the error names the destination (exit 4);
* permissions follow the process umask (files 0666 & ~umask, directories 0777 & ~umask), like any
  other tool: set ``umask 077`` for private outputs.

Any command that writes (the existing ones and new ones) calls :func:`check_output` first, then
writes through :func:`atomic_file` / :func:`replace_dir` / :func:`make_output_dir`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import DataError, UsageError

#: marker file in every directory cmraudit creates; ``--overwrite`` only replaces directories holding it
MARKER = ".cmraudit-output"
#: OSErrors that mean "this destination cannot be written" (exit 4, naming the path) rather than a bug
WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.ENOENT,
    errno.ENOTDIR,
}


def _inject(stage: str, path: Path) -> None:
    """Fault-injection point (tests monkeypatch it to raise ``OSError(ENOSPC)``); does nothing otherwise."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _resolve(p: str | os.PathLike) -> Path:
    return Path(p).expanduser().resolve(strict=False)


def is_cmraudit_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory that cmraudit wrote (it holds :data:`MARKER`)."""
    return (Path(path) / MARKER).is_file()


def marker_kind(path: str | os.PathLike) -> str | None:
    """The kind of output (dataset, model, run, …) recorded in the marker of ``path``; None when unmarked."""
    p = Path(path) / MARKER
    if not p.is_file():
        return None
    try:
        return str(json.loads(p.read_text()).get("kind", "output"))
    except (OSError, ValueError, AttributeError):
        return "output"


def write_marker(directory: str | os.PathLike, kind: str = "output") -> None:
    from . import __version__

    p = Path(directory) / MARKER
    if not p.exists():
        p.write_text(json.dumps({"written_by": "cmraudit", "version": __version__, "kind": kind}) + "\n")
        os.chmod(p, 0o666 & ~_umask())


def check_output(
    out: str | os.PathLike,
    *,
    inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
    option: str = "--out",
    kind: str = "dir",
    signature: str | None = None,
    produces: str | None = None,
) -> Path:
    """Refuse an output path that would endanger an input or a foreign file; return it as a Path.

    ``inputs``: ``(option name, path)`` pairs (None paths are skipped). ``kind``: ``"dir"`` (a directory
    cmraudit creates or replaces; with ``produces``, an existing cmraudit directory must hold that kind of output,
    so that e.g. ``data phantom --overwrite`` never replaces a model) or ``"file"`` (one file; missing parent
    directories are created; an existing file is replaced only when it contains ``signature``, the mark of
    cmraudit's own output of that kind).
    Raises :class:`UsageError` (exit 2) naming the option and both paths.
    """
    out = Path(out)
    ro = _resolve(out)
    for name, p in inputs:
        if p is None:
            continue
        rp = _resolve(p)
        if ro == rp:
            raise UsageError(f"{option} {out}: is the input {name} {p}; choose an output outside every input")
        if rp in ro.parents:
            raise UsageError(f"{option} {out}: lies inside the input {name} {p}; choose an output outside every input")
        if ro in rp.parents:
            raise UsageError(f"{option} {out}: contains the input {name} {p}; choose an output outside every input")
    anc = out.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise UsageError(f"{option} {out}: {anc} is a file, not a directory")
    if kind == "file":
        if out.is_dir():
            raise UsageError(f"{option} {out}: is a directory; give a file path")
        if out.exists() and signature is not None and signature.encode() not in out.read_bytes():
            raise UsageError(
                f"{option} {out}: an existing file cmraudit did not write; cmraudit never replaces it — "
                f"choose another {option}"
            )
        return out
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out}: is a file, not a directory; choose another {option}")
    if out.is_dir() and any(out.iterdir()) and not is_cmraudit_dir(out):
        raise UsageError(
            f"{option} {out}: a directory cmraudit did not write (no {MARKER}); cmraudit never writes into "
            f"or replaces it — choose another {option}"
        )
    have = marker_kind(out) if out.is_dir() else None
    if produces is not None and have not in (None, produces, "output"):
        raise UsageError(f"{option} {out}: holds a cmraudit {have}, not a {produces}; choose another {option}")
    return out


@contextlib.contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Map disk-full / read-only / permission errors while writing ``path`` to one DataError naming it (exit 4)."""
    try:
        yield
    except OSError as e:
        if e.errno in WRITE_ERRNOS and not isinstance(e, DataError):
            raise DataError(
                f"{path}: cannot write ({e.strerror or os.strerror(e.errno)}); nothing was left behind"
            ) from e
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``path`` (mode 0666 & ~umask).

    On any failure the temporary is removed; disk-full and permission errors become a DataError naming ``path``.
    """
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            _inject("file", path)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, kind: str = "output") -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it becomes ``path`` (see :func:`replace_dir`)."""
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            yield tmp
            replace_dir(tmp, path, kind=kind)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def replace_dir(tmp: Path, path: Path, *, kind: str = "output") -> None:
    """Rename the finished directory ``tmp`` to ``path`` (the last step of an atomic write).

    An existing ``path`` is replaced only when it is empty or holds :data:`MARKER`; a regular file is never
    replaced. The old directory is moved into a temporary folder that is always removed: nothing is left behind.
    """
    tmp, path = Path(tmp), Path(path)
    write_marker(tmp, kind)
    os.chmod(tmp, 0o777 & ~_umask())
    _inject("dir", path)
    if not (path.exists() or path.is_symlink()):
        tmp.rename(path)
        return
    if path.is_symlink() or not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory; cmraudit does not replace it")
    if any(path.iterdir()) and not is_cmraudit_dir(path):
        raise UsageError(f"{path}: a directory cmraudit did not write (no {MARKER}); refusing to replace it")
    have = marker_kind(path)
    if have not in (None, kind, "output"):
        raise UsageError(f"{path}: holds a cmraudit {have}, not a {kind}; refusing to replace it")
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    try:
        path.rename(trash / "old")
        try:
            tmp.rename(path)
        except BaseException:
            (trash / "old").rename(path)
            raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def make_output_dir(path: str | os.PathLike, *, kind: str = "output") -> Path:
    """Create ``path`` (and parents) if needed; mark it as cmraudit's when it is new or empty.

    A non-empty directory without the marker is left unmarked (call :func:`check_output` first to refuse it).
    """
    path = Path(path)
    with write_errors(path):
        if not path.is_dir() or not any(path.iterdir()):
            path.mkdir(parents=True, exist_ok=True)
            write_marker(path, kind)
    return path


_STALE = re.compile(r"^\..+(\.tmp|\.tmp\.nii\.gz)$|^\..+\.(tmp|old)-[A-Za-z0-9_]+$")


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries a killed process (kill -9, power loss) left in a directory cmraudit wrote.

    Only names of cmraudit's own temporaries (``.NAME.XXXX.tmp``, ``.NAME.tmp-XXXX``, ``.NAME.old-XXXX``), and only
    inside a directory holding :data:`MARKER`. Returns what was removed.
    """
    directory = Path(directory)
    if not is_cmraudit_dir(directory):
        return []
    gone = []
    for p in sorted(directory.rglob(".*"), key=lambda q: len(q.parts), reverse=True):
        if _STALE.match(p.name) and p.exists():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def remove_if_created(path: Path, created: bool) -> None:
    """Remove ``path`` after a failure, but only when this command created it (never an existing directory)."""
    if created:
        shutil.rmtree(path, ignore_errors=True)
