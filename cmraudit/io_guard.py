"""Output-path guard and atomic write helpers shared by every command (docs/cli.md#outputs).

The rules, in one place:

* an output may never be, contain, or lie inside one of the command's inputs (:func:`check_output`);
* an existing non-empty directory is only ever replaced or written into when cmraudit wrote it, recognised by its
  marker file :data:`MARKER`; a regular file is never replaced by a directory; a finished output lists its top-level
  entries in the marker, and one holding any other entry is never written into (:func:`foreign_entries`);
* every file or directory is written to a temporary sibling and renamed into place; on any failure (disk full,
  Ctrl-C) the temporary is removed and the error names the destination (exit 4);
* permissions follow the process umask (files 0666 & ~umask, directories 0777 & ~umask): ``umask 077`` for private.

Every command that writes calls :func:`check_output` first, then writes through :func:`atomic_file` /
:func:`replace_dir` / :func:`make_output_dir`.
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
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                errno.ENOENT, errno.ENOTDIR}


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


def _marker(path: str | os.PathLike) -> dict | None:
    """The marker of ``path`` as a dict (``{}`` when unreadable); None when unmarked."""
    p = Path(path) / MARKER
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def marker_kind(path: str | os.PathLike) -> str | None:
    """The kind of output (dataset, model, run, …) recorded in the marker of ``path``; None when unmarked."""
    d = _marker(path)
    return None if d is None else str(d.get("kind", "output"))


def _write_marker(directory: Path, data: dict) -> None:
    from . import __version__

    p = directory / MARKER
    tmp = directory / f"{MARKER}.{os.getpid()}.tmp"  # a name remove_stale_temps knows
    try:
        tmp.write_text(json.dumps({"written_by": "cmraudit", "version": __version__, **data}) + "\n")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_marker(directory: str | os.PathLike, kind: str = "output") -> None:
    if not (Path(directory) / MARKER).exists():
        _write_marker(Path(directory), {"kind": kind})


def _entries(directory: Path) -> list[str]:
    """Top-level names in ``directory`` but the marker and cmraudit's own temporaries."""
    return sorted(p.name for p in directory.iterdir() if p.name != MARKER and not _STALE.match(p.name))


def record_entries(directory: str | os.PathLike, kind: str = "output") -> None:
    """Record in the marker every top-level entry of ``directory`` as written by cmraudit (call it when a command
    has finished writing the directory): later outputs refuse to replace or write into it while it holds any other
    entry (:func:`foreign_entries`)."""
    directory = Path(directory)
    d = _marker(directory) or {}
    _write_marker(directory, {"kind": str(d.get("kind", kind)), "entries": _entries(directory)})


def foreign_entries(directory: str | os.PathLike) -> list[str]:
    """Top-level entries of a cmraudit directory that its marker does not list (a user's files); ``[]`` when the
    marker lists nothing (older outputs, interrupted runs: cmraudit cannot tell)."""
    d = _marker(directory)
    listed = d.get("entries") if d else None
    if not isinstance(listed, list):
        return []
    return [n for n in _entries(Path(directory)) if n not in set(map(str, listed))]


def _register(path: Path) -> None:
    """Add ``path`` to the entries recorded in its parent's marker (when the parent records entries)."""
    d = _marker(path.parent)
    if d and isinstance(d.get("entries"), list) and path.name not in d["entries"] and path.name != MARKER:
        _write_marker(path.parent, {**d, "entries": sorted({*map(str, d["entries"]), path.name})})


def _not_ours(names: list[str]) -> str:
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{listed} {'was' if len(names) == 1 else 'were'} not written by cmraudit"


def _holds_signature(path: Path, signature: str, window: int = 1 << 16) -> bool:
    """Whether the first or last ``window`` bytes of the regular file ``path`` hold ``signature``."""
    sig = signature.encode()
    with open(path, "rb") as f:
        head, tail = f.read(window), b""
        size = os.fstat(f.fileno()).st_size
        if size > window:  # the last window, overlapping the first by the signature's length
            f.seek(max(window, size - window) - len(sig))
            tail = f.read(window + len(sig))
    return sig in head or sig in tail


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

    ``inputs``: ``(option name, path)`` pairs (None paths are skipped). ``kind``: ``"dir"`` (a directory cmraudit
    creates or replaces; with ``produces``, an existing cmraudit directory must hold that kind of output, so that
    e.g. ``data phantom --overwrite`` never replaces a model) or ``"file"`` (one file; missing parent directories
    are created; an existing file is replaced only when it contains ``signature``, the mark of cmraudit's own
    output of that kind; never into a cmraudit folder holding a user's file).
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
        if out.exists() and not out.is_file():
            raise UsageError(f"{option} {out}: exists and is not a regular file (a device, FIFO or socket); "
                             f"choose another {option}")
        if out.exists() and signature is not None and not _holds_signature(out, signature):
            raise UsageError(f"{option} {out}: an existing file cmraudit did not write; cmraudit never replaces it — "
                             f"choose another {option}")
        foreign = [n for n in foreign_entries(out.parent) if n != out.name] if out.parent.is_dir() else []
        if foreign:  # a finished cmraudit folder holding a user's file: never written into (by a file either)
            raise UsageError(f"{option} {out}: in {out.parent}, {_not_ours(foreign)}; cmraudit never writes into "
                             f"such a folder — move them away or choose another {option}")
        return out
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out}: is a file, not a directory; choose another {option}")
    if out.is_dir() and any(out.iterdir()) and not is_cmraudit_dir(out):
        raise UsageError(f"{option} {out}: a directory cmraudit did not write (no {MARKER}); cmraudit never writes "
                         f"into or replaces it — choose another {option}")
    have = marker_kind(out) if out.is_dir() else None
    if produces is not None and have not in (None, produces, "output"):
        raise UsageError(f"{option} {out}: holds a cmraudit {have}, not a {produces}; choose another {option}")
    foreign = foreign_entries(out) if out.is_dir() else []
    if foreign:
        raise UsageError(f"{option} {out}: {_not_ours(foreign)}; cmraudit never writes into or replaces a folder "
                         f"holding such files — move {'it' if len(foreign) == 1 else 'them'} away or choose another "
                         f"{option}")
    return out


#: the OSError numpy raises, without errno, when a write comes up short (a full disk)
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


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
        if e.errno is None and _SHORT_WRITE.search(str(e)):  # numpy's tofile/save on a full disk: no errno
            raise DataError(f"{path}: cannot write ({e}: is the disk full?); nothing was left behind") from e
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
            _register(path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, kind: str = "output", map_errors: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it becomes ``path`` (see :func:`replace_dir`), on any failure
    it is removed. ``map_errors=False`` (a whole command built inside): errors of the caller's work pass unchanged."""
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        with write_errors(path) if map_errors else contextlib.nullcontext():
            yield tmp
        with write_errors(path):
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
    record_entries(tmp, kind)  # the marker, listing everything in tmp: all of it is cmraudit's
    os.chmod(tmp, 0o777 & ~_umask())
    _inject("dir", path)
    if not (path.exists() or path.is_symlink()):
        tmp.rename(path)
        _register(path)
        return
    if path.is_symlink() or not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory; cmraudit does not replace it")
    if any(path.iterdir()) and not is_cmraudit_dir(path):
        raise UsageError(f"{path}: a directory cmraudit did not write (no {MARKER}); refusing to replace it")
    have = marker_kind(path)
    if have not in (None, kind, "output"):
        raise UsageError(f"{path}: holds a cmraudit {have}, not a {kind}; refusing to replace it")
    foreign = foreign_entries(path)
    if foreign:
        raise UsageError(f"{path}: {_not_ours(foreign)}; refusing to replace it")
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
            new = not path.exists()
            path.mkdir(parents=True, exist_ok=True)
            write_marker(path, kind)
            if new:
                _register(path)
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
