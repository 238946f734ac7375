"""Compare two report.json files in content, ignoring what legitimately changes between runs.

Usage: python bench/report_diff.py BEFORE/report.json AFTER/report.json [--ignore KEY ...]

Ignored: timings and durations (keys ending in ``_s``/``_seconds``/``seconds_per_slice``, ``timings_s``), creation
times, versions and commits, absolute paths of the run directory (``artefacts``, ``out``, ``path``…), and the keys
given with ``--ignore``. Floats are compared exactly (the same seed must give the same numbers). Prints one line per
difference and exits 1 when there is any, 0 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys

VOLATILE = ("created_utc", "cmraudit_version", "version", "commit", "git", "python", "torch", "platform", "host",
            "timings_s", "artefacts", "out", "out_dir", "run_dir", "path", "paths", "hostname", "git_commit")


def _volatile(key: str, extra: tuple[str, ...]) -> bool:
    return (key in VOLATILE or key in extra or key.endswith("_seconds") or key.endswith("_s")
            or key == "seconds_per_slice" or key.endswith("_time") or key.endswith("_version") or key.endswith("_utc"))


def diff(a, b, path: str = "", extra: tuple[str, ...] = ()) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if _volatile(str(k), extra):
                continue
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"+ {p} = {json.dumps(b[k])[:160]}")
            elif k not in b:
                out.append(f"- {p} = {json.dumps(a[k])[:160]}")
            else:
                out += diff(a[k], b[k], p, extra)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"~ {path}: list length {len(a)} -> {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]", extra)]
    if a != b and not (a != a and b != b):  # NaN == NaN here
        return [f"~ {path}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}"]
    return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--ignore", nargs="*", default=[])
    args = ap.parse_args(argv)
    a, b = (json.load(open(p)) for p in (args.before, args.after))
    diffs = diff(a, b, extra=tuple(args.ignore))
    n = sum(1 for _ in _leaves(a))
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s) over {n} leaf values")
    return 1 if diffs else 0


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


if __name__ == "__main__":
    sys.exit(main())
