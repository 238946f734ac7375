"""Walk report sections: find estimates, skipped entries, ROC curves, DCR histograms, top pairs.

Stage sections evolve; these helpers find things by shape and key name, not by fixed paths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from ..estimates import is_skipped  # noqa: F401 - the one definition; re-exported for compare and html


@dataclass(frozen=True)
class Leaf:
    """An estimate or a skipped entry found at ``path`` (dotted) under metric ``key``."""

    path: str
    key: str
    entry: dict

    @property
    def skipped(self) -> bool:
        return self.entry.get("status") == "skipped"


def is_estimate(d: Any) -> bool:
    return isinstance(d, dict) and "value" in d


def leaves(node: Any, path: str) -> Iterator[Leaf]:
    """Every estimate and skipped entry under ``node`` in document order."""
    if is_estimate(node) or is_skipped(node):
        yield Leaf(path, path.rsplit(".", 1)[-1], node)
        return
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("roc", "dcr_histogram", "top_pairs"):
                continue
            yield from leaves(v, f"{path}.{k}")


def find_key(node: Any, key: str, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, value) whose key is ``key`` anywhere under ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f"{path}.{k}"
            if k == key:
                yield sub, v
            else:
                yield from find_key(v, key, sub)


def roc_curves(privacy: Any) -> dict[str, dict[str, tuple[list, list]]]:
    """{level: {attack: (fpr, tpr)}} from ``privacy.mia.<attack>.<level>.roc``."""
    out: dict[str, dict[str, tuple[list, list]]] = {}
    mia = privacy.get("mia") if isinstance(privacy, dict) else None
    if not isinstance(mia, dict) or is_skipped(mia):
        return out
    for attack, entry in mia.items():
        if not isinstance(entry, dict) or is_skipped(entry):
            continue
        for level, lv in entry.items():
            roc = lv.get("roc") if isinstance(lv, dict) else None
            if isinstance(roc, dict) and isinstance(roc.get("fpr"), list) and isinstance(roc.get("tpr"), list):
                out.setdefault(level, {})[attack] = (roc["fpr"], roc["tpr"])
    return out


def feature_spaces(privacy: Any) -> dict[str, dict]:
    fs = privacy.get("feature_spaces") if isinstance(privacy, dict) else None
    if not isinstance(fs, dict) or is_skipped(fs):
        return {}
    return {k: v for k, v in fs.items() if isinstance(v, dict)}


def first_number(node: Any, key: str) -> float | None:
    """The first numeric ``key`` (or estimate value under it) anywhere in ``node``."""
    for _, v in find_key(node, key, ""):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if is_estimate(v) and isinstance(v.get("value"), (int, float)):
            return float(v["value"])
    return None


def top_pairs(space: dict) -> list[dict]:
    """Flagged / nearest pairs of a feature space: a list of dicts with at least
    ``synthetic_index`` and ``distance`` (``train_index`` gives the real side)."""
    for _, v in find_key(space, "top_pairs", ""):
        if isinstance(v, list):
            return [p for p in v if isinstance(p, dict) and "synthetic_index" in p]
    return []
