"""Typed results of every stage and of the report as a whole (docs/design.md § 8, docs/api.md).

The engine computes plain JSON-ready sections; these frozen dataclasses wrap them at the stage
boundary. ``to_dict()`` gives exactly the report.json shape (docs/report-schema.md), so a
:class:`Report` written to disk and read back compares equal to its dict. A :class:`Report` is also a
read-only mapping (``report["privacy"]["mia"]``), has ``.verdicts``, ``.summary()``, ``.to_frame()``
and an HTML repr for notebooks. One builder makes it: :func:`cmraudit.reporting.build_report`.
"""
from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from .errors import UsageError
from .estimates import is_skipped, skipped
from .report.walk import leaves
from .report.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION", "StageSection", "PrivacySection", "FidelitySection", "UtilitySection", "DataSection",
    "DPSection", "TrainingSection", "GeneratorSection", "RunSection", "Report", "RunResult", "section_of",
]


# ------------------------------------------------------------------ stage sections
@dataclass(frozen=True)
class StageSection:
    """One audit stage's report section as the engine computed it (or a skipped entry)."""

    body: Mapping[str, Any]
    stage: ClassVar[str] = "stage"

    @classmethod
    def skipped(cls, reason: str) -> "StageSection":
        return cls(skipped(reason))

    @property
    def is_skipped(self) -> bool:
        return is_skipped(self.body)

    @property
    def reason(self) -> str | None:
        return str(self.body.get("reason")) if self.is_skipped else None

    @property
    def status(self) -> str:
        return "skipped" if self.is_skipped else "done"

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default)

    def to_dict(self) -> dict:
        return dict(self.body)


@dataclass(frozen=True)
class PrivacySection(StageSection):
    stage: ClassVar[str] = "privacy"

    @property
    def feature_spaces(self) -> dict:
        return {} if self.is_skipped else dict(self.body.get("feature_spaces") or {})

    @property
    def mia(self) -> dict:
        return {} if self.is_skipped else dict(self.body.get("mia") or {})


@dataclass(frozen=True)
class FidelitySection(StageSection):
    stage: ClassVar[str] = "fidelity"


@dataclass(frozen=True)
class UtilitySection(StageSection):
    stage: ClassVar[str] = "utility"


ROW_COLUMNS = ("path", "value", "ci_low", "ci_high", "n", "unit", "status", "reason")
_SECTIONS = {c.stage: c for c in (PrivacySection, FidelitySection, UtilitySection)}
STAGE_ORDER = ("privacy", "fidelity", "utility")


def section_of(stage: str, value: Any) -> StageSection:
    """Wrap an engine result (an object with ``to_dict()``, a dict or a section) as the typed section of ``stage``."""
    cls = _SECTIONS[stage]
    if isinstance(value, StageSection):
        return value if isinstance(value, cls) else cls(value.to_dict())
    return cls(value.to_dict() if hasattr(value, "to_dict") else dict(value))


# ------------------------------------------------------------------ data, generator, run
@dataclass(frozen=True)
class DataSection:
    """Split sizes: ``counts[name] = {"patients": p, "slices": s}`` (or only slices; ``synthetic_paired`` when
    paired slices were drawn), the source and other keys (``extra``: e.g. evaluate's ``reference``)."""

    source: str | None
    counts: Mapping[str, Mapping[str, Any]]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping) -> "DataSection":
        counts = {k: v for k, v in d.items() if isinstance(v, Mapping) and "slices" in v}
        return cls(d.get("source"), counts, {k: v for k, v in d.items() if k not in counts and k != "source"})

    @property
    def paired_slices(self) -> int | None:
        p = self.counts.get("synthetic_paired")
        return None if p is None else int(p["slices"])

    def to_dict(self) -> dict:
        head = {} if self.source is None else {"source": self.source}
        return {**head, **{k: dict(v) for k, v in self.counts.items()}, **self.extra}


@dataclass(frozen=True)
class DPSection:
    """``generator.dp``: the composed DP budget of a generator trained with DP-SGD (keys of compose_budget)."""

    epsilon: float
    delta: float
    accountant: str
    body: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "DPSection | None":
        if d is None:
            return None
        return cls(epsilon=d["epsilon"], delta=d["delta"], accountant=d["accountant"], body=dict(d))

    def to_dict(self) -> dict:
        return {**self.body, "epsilon": self.epsilon, "delta": self.delta, "accountant": self.accountant}


@dataclass(frozen=True)
class TrainingSection:
    """``generator.training``: one summary per trained stage (steps, time, first / last loss, DP) and the run facts
    (patients, slices, world size, device)."""

    stages: Mapping[str, Mapping[str, Any]]
    info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "TrainingSection":
        d = d or {}
        return cls({k: v for k, v in d.items() if isinstance(v, Mapping)},
                   {k: v for k, v in d.items() if not isinstance(v, Mapping)})

    def to_dict(self) -> dict:
        return {**{k: dict(v) for k, v in self.stages.items()}, **self.info}


@dataclass(frozen=True)
class GeneratorSection:
    """The ``generator`` section: name, parameters, plugin provenance, tags, training summary, DP."""

    name: str
    params: Mapping[str, Any]
    dp: DPSection | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)  # the other keys, in report order

    @property
    def training(self) -> TrainingSection:
        return TrainingSection.from_dict(self.fields.get("training"))

    @property
    def tags(self) -> dict:
        return dict(self.fields.get("tags") or {})

    def to_dict(self) -> dict:
        d = {"name": self.name, "params": dict(self.params), **self.fields,
             "dp": None if self.dp is None else self.dp.to_dict()}
        order = ("name", "params", "distribution", "version", "entry_point", "tags", "training_time_s", "training",
                 "dp")
        return {**{k: d[k] for k in order if k in d}, **{k: v for k, v in d.items() if k not in order}}


@dataclass(frozen=True)
class RunSection:
    """The ``run`` section (provenance): what ran, with what, where; the rest of the keys in ``fields``."""

    cmraudit_version: str
    created_utc: str
    seed: int
    device: str
    config: Mapping[str, Any]
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping) -> "RunSection":
        head = ("cmraudit_version", "created_utc", "seed", "device", "config")
        return cls(*(d[k] for k in head), fields={k: v for k, v in d.items() if k not in head})

    def to_dict(self) -> dict:
        return {"cmraudit_version": self.cmraudit_version, "created_utc": self.created_utc, "seed": self.seed,
                "device": self.device, "config": dict(self.config), **self.fields}


# ------------------------------------------------------------------ the report
@dataclass(frozen=True, eq=False)
class Report(Mapping):
    """report.json as a typed object; also a read-only mapping of its JSON dict (``report["privacy"]``)."""

    run: RunSection
    data: DataSection
    generator: GeneratorSection
    privacy: PrivacySection
    fidelity: FidelitySection
    utility: UtilitySection
    verdicts: Mapping[str, Any]
    schema_version: str = SCHEMA_VERSION
    stage_order: tuple[str, ...] = STAGE_ORDER
    dp_audit: Mapping[str, Any] | None = None  # the canary DP audit (run --dp-audit-canaries); absent when not run

    @classmethod
    def from_dict(cls, d: Mapping) -> "Report":
        """A report read from disk (``cmraudit.report.read_report``) as a typed object."""
        order = tuple(k for k in d if k in _SECTIONS)
        g = d["generator"]
        gen = GeneratorSection(name=g["name"], params=g.get("params") or {}, dp=DPSection.from_dict(g.get("dp")),
                               fields={k: v for k, v in g.items() if k not in ("name", "params", "dp")})
        return cls(run=RunSection.from_dict(d["run"]), data=DataSection.from_dict(d["data"]),
                   generator=gen, **{s: section_of(s, d[s]) for s in STAGE_ORDER}, verdicts=d.get("verdicts") or {},
                   schema_version=d.get("schema_version", SCHEMA_VERSION), stage_order=order or STAGE_ORDER,
                   dp_audit=d.get("dp_audit"))

    def to_dict(self) -> dict:
        return {"schema_version": self.schema_version, "run": self.run.to_dict(), "data": self.data.to_dict(),
                "generator": self.generator.to_dict(), **{s: getattr(self, s).to_dict() for s in self.stage_order},
                **({} if self.dp_audit is None else {"dp_audit": dict(self.dp_audit)}),
                "verdicts": dict(self.verdicts) if self.verdicts is not None else None}

    # --- read-only mapping over the JSON dict (cached: the dataclass is frozen)
    def _dict(self) -> dict:
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = self.to_dict()
            object.__setattr__(self, "_cache", cached)
        return cached

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return f"Report(generator={self.generator.name!r}, verdict={self.overall!r}, stages={self.stage_status})"

    # --- views
    @property
    def overall(self) -> str | None:
        return (self.verdicts or {}).get("overall")

    @property
    def stage_status(self) -> dict[str, str]:
        return {s: getattr(self, s).status for s in STAGE_ORDER}

    def summary(self) -> str:
        """A few lines: the generator, the data, each stage's status, each check's verdict."""
        counts = ", ".join(f"{k} {v['patients']} patients/{v['slices']} slices" if "patients" in v else
                           f"{k} {v['slices']} slices" for k, v in self.data.counts.items())
        lines = [f"{self.generator.name}: overall verdict {self.overall or 'none'}", f"data: {counts}"]
        for s in STAGE_ORDER:
            sec = getattr(self, s)
            lines.append(f"{s}: {'skipped (' + str(sec.reason) + ')' if sec.is_skipped else 'done'}")
        for name, c in ((self.verdicts or {}).get("checks") or {}).items():
            lines.append(f"  {name}: {c.get('verdict')}")
        return "\n".join(lines)

    def to_frame(self):
        """One row per reported estimate or skipped entry (pandas DataFrame; needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise UsageError("Report.to_frame() needs pandas: pip install pandas (or use report.to_dict())") from e
        return pd.DataFrame(self.rows(), columns=list(ROW_COLUMNS))

    def rows(self) -> list[dict]:
        """The rows of :meth:`to_frame` as dicts (no pandas needed)."""
        out = []
        for s in STAGE_ORDER:
            for leaf in leaves(getattr(self, s).to_dict(), s):
                e = leaf.entry
                ci = e.get("ci") or [None, None]
                out.append(dict(zip(ROW_COLUMNS, (leaf.path, e.get("value"), ci[0], ci[1], e.get("n"), e.get("unit"),
                                                  "skipped" if leaf.skipped else "done", e.get("reason")))))
        return out

    def _repr_html_(self) -> str:
        checks = ((self.verdicts or {}).get("checks") or {}).items()
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(c.get('verdict')))}</td>"
                       f"<td>{html.escape(str(c.get('reason', ''))[:160])}</td></tr>" for k, c in checks)
        stages = ", ".join(f"{k}: {v}" for k, v in self.stage_status.items())
        return (f"<div><b>cmraudit report</b> — {html.escape(self.generator.name)}, overall verdict "
                f"<b>{html.escape(str(self.overall))}</b><br>{html.escape(stages)}"
                f"<table><tr><th>check</th><th>verdict</th><th>reason</th></tr>{rows}</table></div>")


@dataclass
class RunResult:
    """What ``run``, ``audit`` and ``evaluate`` return: the output directory, its report, wall time per step."""

    run_dir: Path
    report: Report
    timings: dict[str, float]
    stage_status: dict[str, str]

    @property
    def verdicts(self) -> Mapping[str, Any]:
        return self.report.verdicts

    def summary(self) -> str:
        return f"{self.report.summary()}\noutput: {self.run_dir}"

    def to_frame(self):
        return self.report.to_frame()

    def _repr_html_(self) -> str:
        return self.report._repr_html_() + f"<div>output: <code>{html.escape(str(self.run_dir))}</code></div>"

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "timings": self.timings, "stages": self.stage_status}
