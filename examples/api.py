"""cmraudit from Python: a micro pipeline through the front door (docs/api.md).

    python examples/api.py OUT_DIR

Trains the micro DDPM on the embedded phantom, audits it (run), re-audits its synthetic set for privacy
alone (audit) and prints the typed results. CPU, about two minutes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cmraudit


def main(out: Path) -> int:
    res = cmraudit.run(generator="ddpm", preset="micro", seed=0, out=str(out / "run"), progress=False)
    print(res.summary())
    print("verdict:", res.verdicts["overall"])
    print("stages:", res.report.stage_status)

    train = cmraudit.read_dataset(res.run_dir / "data" / "train")
    print(train)  # one line: slices, patients, size, vendors, source

    aud = cmraudit.audit(train=str(res.run_dir / "data" / "train"), holdout=str(res.run_dir / "data" / "holdout"),
                         synthetic=str(res.run_dir / "synthetic"), model=str(res.run_dir), out=str(out / "audit"),
                         resamples=200, progress=False)
    print(aud.summary())
    mia = aud.report.privacy.mia
    print("attacks:", ", ".join(sorted(mia)))
    rows = aud.report.rows()  # the rows of .to_frame() (pandas), here without pandas
    print(f"{len(rows)} estimates and skipped entries in the audit report")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "cmraudit-runs/api-example")))
