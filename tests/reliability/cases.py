"""The bad-input corpus: (id, argv, exit code, what the one-line message must name).

``{name}`` refers to an input built by the ``assets`` fixture, ``{t}`` to the case's own empty directory.
Every defect of issue 15 has a case; the ids say which. A case with ``plugins=True`` runs with the
hostile third-party plugins of the ``hostile_plugins`` fixture installed.
"""

from __future__ import annotations

from typing import NamedTuple

from cmraudit.errors import EXIT_DATA as D
from cmraudit.errors import EXIT_PLUGIN as P
from cmraudit.errors import EXIT_USAGE as U


class Case(NamedTuple):
    id: str
    argv: str
    code: int
    names: tuple[str, ...]
    plugins: bool = False


PH = "data phantom --subjects 2 --slices 1 --size 32"
FOLDER = "data import folder {raw} --crop 32"
RUN = "run -g ddpm --preset micro --data {ph}"
FIT = "fit -g ddpm --preset micro --data {ph}"
SAMPLE = "sample --model {model}"
AUDIT = "audit --train {ph} --holdout {ph5} --synthetic {ph1}"

CASES = [
    # ---- data phantom: range checks declared on the options, output guard
    Case("phantom-size-0", f"{PH} --out {{t}}/o --size 0", U, ("--size",)),
    Case("phantom-size-200000", f"{PH} --out {{t}}/o --size 200000", U, ("--size",)),
    Case("phantom-size-negative", f"{PH} --out {{t}}/o --size -32", U, ("--size",)),
    Case("phantom-subjects-0", f"{PH} --out {{t}}/o --subjects 0", U, ("--subjects",)),
    Case("phantom-subjects-abc", f"{PH} --out {{t}}/o --subjects abc", U, ("--subjects",)),
    Case("phantom-slices-0", f"{PH} --out {{t}}/o --slices 0", U, ("--slices",)),
    Case("phantom-seed-negative", f"{PH} --out {{t}}/o --seed -1", U, ("--seed",)),
    Case("phantom-seed-2**32", f"{PH} --out {{t}}/o --seed 4294967296", U, ("--seed",)),
    Case("phantom-out-is-file", f"{PH} --out {{file}}", U, ("--out", "{file}")),
    Case("phantom-out-is-file-overwrite", f"{PH} --out {{file}} --overwrite", U, ("--out", "{file}")),
    Case("phantom-out-under-file", f"{PH} --out {{file}}/sub", U, ("--out", "{file}")),
    Case("phantom-out-foreign-dir", f"{PH} --out {{foreign}}", U, ("--out", "{foreign}", "did not write")),
    Case("phantom-out-foreign-dir-overwrite", f"{PH} --out {{foreign}} --overwrite", U, ("{foreign}", "did not write")),
    Case("phantom-out-exists", f"{PH} --out {{ph}}", D, ("{ph}", "already exists")),
    Case("phantom-missing-out", "data phantom --size 32", U, ("--out",)),
    # ---- data import folder / acdc / mnms: output vs input, crop/size ranges, duplicates
    Case("folder-out-is-root-overwrite", f"{FOLDER} --out {{raw}} --overwrite", U, ("--out", "{raw}", "is the input")),
    Case("folder-out-is-root", f"{FOLDER} --out {{raw}}", U, ("--out", "{raw}")),
    Case("folder-out-inside-root", f"{FOLDER} --out {{raw}}/prepared", U, ("lies inside", "{raw}")),
    Case("folder-out-contains-root", f"{FOLDER} --out {{root}} --overwrite", U, ("contains the input", "{raw}")),
    Case("folder-out-is-symlink-to-root", f"{FOLDER} --out {{raw_link}} --overwrite", U,
         ("{raw_link}", "is the input")),
    Case("folder-root-via-symlink", "data import folder {raw_link} --crop 32 --out {raw}/o", U, ("lies inside",)),
    Case("folder-out-dangling-symlink", f"{FOLDER} --out {{dangling}} --overwrite", U, ("{dangling}",)),
    Case("folder-crop-0", f"{FOLDER} --out {{t}}/o --crop 0", U, ("--crop",)),
    Case("folder-crop-negative", f"{FOLDER} --out {{t}}/o --crop -8", U, ("--crop",)),
    Case("folder-size-0", f"{FOLDER} --out {{t}}/o --size 0", U, ("--size",)),
    Case("folder-size-200000", f"{FOLDER} --out {{t}}/o --size 200000", U, ("--size",)),
    Case("folder-out-is-file", f"{FOLDER} --out {{file}} --overwrite", U, ("{file}",)),
    Case("folder-root-missing", "data import folder {t}/nowhere --out {t}/o", D, ("{t}/nowhere",)),
    Case("folder-root-empty", "data import folder {empty} --out {t}/o", D, ("{empty}",)),
    Case("acdc-out-is-root", "data import acdc {acdc} --out {acdc} --overwrite", U, ("{acdc}", "is the input")),
    Case("acdc-crop-0", "data import acdc {acdc} --out {t}/o --crop 0", U, ("--crop",)),
    Case("acdc-size-200000", "data import acdc {acdc} --out {t}/o --size 200000", U, ("--size",)),
    Case("acdc-root-empty", "data import acdc {empty} --out {t}/o", D, ("{empty}",)),
    Case(
        "mnms-duplicate-code",
        "data import mnms {mnms} --info {info_dup} --out {t}/o --crop 32",
        D,
        ("{info_dup}", "twice"),
    ),
    Case(
        "mnms-out-is-info",
        "data import mnms {mnms} --info {info} --out {info} --overwrite",
        U,
        ("{info}", "lies inside"),
    ),
    Case("mnms-out-inside-root", "data import mnms {mnms} --info {info} --out {mnms}/o", U, ("{mnms}", "lies inside")),
    Case("mnms-info-missing", "data import mnms {mnms} --info {t}/none.csv --out {t}/o", D, ("{t}/none.csv",)),
    Case("mnms-crop-0", "data import mnms {mnms} --info {info} --out {t}/o --crop 0", U, ("--crop",)),
    # ---- data import sunnybrook / dicom: duplicate IDs, options named
    Case(
        "sunnybrook-duplicate-patient",
        "data import sunnybrook {sb_dup_pid} --out {t}/o",
        D,
        ("link.csv", "SCD1", "twice"),
    ),
    Case("sunnybrook-duplicate-original", "data import sunnybrook {sb_dup_orig} --out {t}/o", D, ("link.csv", "SC-1")),
    Case("sunnybrook-out-inside-root", "data import sunnybrook {sb_dup_pid} --out {sb_dup_pid}/o", U, ("lies inside",)),
    Case("sunnybrook-not-a-folder", "data import sunnybrook {empty} --out {t}/o", D, ("{empty}", "link.csv")),
    Case("sunnybrook-crop-0", "data import sunnybrook {sb_dup_pid} --out {t}/o --crop 0", U, ("--crop",)),
    Case(
        "dicom-mask-format-bogus",
        "data import dicom {empty} --masks-from {raw} --out {t}/o --mask-format bogus",
        U,
        ("--mask-format", "bogus"),
    ),
    Case(
        "dicom-annotated-FOO",
        "data import dicom {empty} --masks-from {raw} --out {t}/o --annotated FOO",
        U,
        ("--annotated", "FOO"),
    ),
    Case(
        "dicom-link-duplicate",
        "data import dicom {sb_dup_pid}/dicoms --masks-from {raw} --link {link_dup} --out {t}/o",
        D,
        ("{link_dup}", "twice"),
    ),
    Case(
        "dicom-out-is-masks-from",
        "data import dicom {empty} --masks-from {raw} --out {raw} --overwrite",
        U,
        ("--masks-from", "{raw}"),
    ),
    Case("dicom-size-0", "data import dicom {empty} --masks-from {raw} --out {t}/o --size 0", U, ("--size",)),
    # ---- prepared datasets validated on entry
    Case("info-slice-index-abc", "data info {bad_slice_index}", D, ("{bad_slice_index}", "slice_index")),
    Case("info-spacing-not-number", "data info {bad_spacing}", D, ("{bad_spacing}", "spacing_x_mm")),
    Case("info-annotated-unknown", "data info {bad_annotated}", D, ("{bad_annotated}", "FOO")),
    Case("info-dataset-json-list", "data info {bad_json_list}", D, ("{bad_json_list}", "dataset.json")),
    Case("info-format-version-abc", "data info {bad_version}", D, ("{bad_version}", "format_version")),
    Case("info-images-0d", "data info {bad_0d}", D, ("{bad_0d}", "images.npy")),
    Case("info-rows-mismatch", "data info {bad_rows}", D, ("{bad_rows}", "rows")),
    Case("info-no-dataset-json", "data info {bad_nojson}", D, ("{bad_nojson}", "dataset.json")),
    Case("info-missing", "data info {t}/nowhere", D, ("{t}/nowhere",)),
    Case("info-verify-label-7", "data info {bad_label7} --verify", D, ("{bad_label7}", "0..3")),
    Case("info-verify-nan", "data info {bad_nan} --verify", D, ("{bad_nan}", "NaN")),
    # ---- run: options checked before training, data validated on entry, split sizes, output guard
    Case("run-n-samples-0", f"{RUN} --out {{t}}/r --n-samples 0", U, ("--n-samples",)),
    Case("run-n-samples-negative", f"{RUN} --out {{t}}/r --n-samples -3", U, ("--n-samples",)),
    Case("run-n-paired-negative", f"{RUN} --out {{t}}/r --n-paired -1", U, ("--n-paired",)),
    Case("run-seed-negative", f"{RUN} --out {{t}}/r --seed -1", U, ("--seed",)),
    Case("run-seed-too-big", f"{RUN} --out {{t}}/r --seed 99999999999", U, ("--seed",)),
    Case("run-preset-bogus", "run -g ddpm --preset bogus --data {ph} --out {t}/r", U, ("--preset",)),
    Case("run-dp-delta-2", f"{RUN} --out {{t}}/r --dp-epsilon 8 --dp-delta 2", U, ("--dp-delta",)),
    Case("run-noise-multiplicity-0", f"{RUN} --out {{t}}/r --noise-multiplicity 0", U, ("--noise-multiplicity",)),
    Case("run-unknown-generator", "run -g no-such-gen --data {ph} --out {t}/r", P, ("no-such-gen",)),
    Case("run-out-is-file", f"{RUN} --out {{file}}", U, ("--out", "{file}")),
    Case("run-out-is-data", f"{RUN} --out {{ph}} --overwrite", U, ("--out", "{ph}", "--data")),
    Case("run-out-inside-data", f"{RUN} --out {{ph}}/run", U, ("lies inside", "{ph}")),
    Case("run-out-foreign-dir", f"{RUN} --out {{foreign}}", U, ("{foreign}", "did not write")),
    Case("run-data-label-7", "run -g ddpm --preset micro --data {bad_label7} --out {t}/r", D, ("{bad_label7}", "0..3")),
    Case("run-data-nan", "run -g ddpm --preset micro --data {bad_nan} --out {t}/r", D, ("{bad_nan}", "NaN")),
    Case(
        "run-data-json-list", "run -g ddpm --preset micro --data {bad_json_list} --out {t}/r", D, ("{bad_json_list}",)
    ),
    Case(
        "run-data-slice-index", "run -g ddpm --preset micro --data {bad_slice_index} --out {t}/r", D, ("slice_index",)
    ),
    Case("run-data-missing", "run -g ddpm --preset micro --data {t}/nowhere --out {t}/r", D, ("{t}/nowhere",)),
    Case("run-split-too-small", "run -g ddpm --preset micro --data {ph5} --out {t}/r", D, ("{ph5}", "holdout 1 < 2")),
    Case("run-one-patient", "run -g ddpm --preset micro --data {ph1} --out {t}/r", D, ("{ph1}", "at least 3 patients")),
    # ---- fit: work dir and out guarded, data validated, foreign training state refused
    Case("fit-work-dir-is-file", f"{FIT} --out {{t}}/m --work-dir {{file}}", U, ("--work-dir", "{file}")),
    Case("fit-work-dir-is-data", f"{FIT} --out {{t}}/m --work-dir {{ph}}", U, ("--work-dir", "{ph}")),
    Case("fit-out-is-file", f"{FIT} --out {{file}}", U, ("--out", "{file}")),
    Case("fit-out-is-data", f"{FIT} --out {{ph}}", U, ("--out", "{ph}", "--data")),
    Case("fit-out-foreign", f"{FIT} --out {{foreign}}", U, ("{foreign}", "did not write")),
    Case("fit-data-nan", "fit -g ddpm --preset micro --data {bad_nan} --out {t}/m", D, ("{bad_nan}", "NaN")),
    Case("fit-data-0d", "fit -g ddpm --preset micro --data {bad_0d} --out {t}/m", D, ("{bad_0d}", "images.npy")),
    Case("fit-resume-without-state", f"{FIT} --out {{t}}/m --resume", U, ("--resume", "--work-dir")),
    Case(
        "fit-resume-foreign-state",
        f"{FIT} --out {{t}}/m --work-dir {{work_foreign}} --resume",
        D,
        ("{work_foreign}", "train_state.pt"),
    ),
    Case("fit-seed-negative", f"{FIT} --out {{t}}/m --seed -1", U, ("--seed",)),
    Case("fit-set-malformed", f"{FIT} --out {{t}}/m --set steps", U, ("--set",)),
    # ---- sample: model folder validated, output guard (the model is never deleted)
    Case("sample-out-is-model-overwrite", f"{SAMPLE} --out {{model}} --n 2 --overwrite", U, ("{model}", "--model")),
    Case("sample-out-inside-model", f"{SAMPLE} --out {{model}}/syn --n 2", U, ("lies inside", "{model}")),
    Case("sample-out-contains-model", f"{SAMPLE} --out {{root}} --n 2 --overwrite", U, ("contains the input",)),
    Case("sample-out-is-masks", f"{SAMPLE} --masks {{ph}} --out {{ph}} --overwrite", U, ("--masks", "{ph}")),
    Case("sample-out-is-file", f"{SAMPLE} --out {{file}} --n 2 --overwrite", U, ("{file}",)),
    Case("sample-png-sibling-foreign", f"{SAMPLE} --out {{shots}} --n 2", D, ("shots.png", "already exists")),
    Case("sample-png-sibling-foreign-overwrite", f"{SAMPLE} --out {{shots}} --n 2 --overwrite", D, ("shots.png",)),
    Case("sample-n-0", f"{SAMPLE} --out {{t}}/s --n 0", U, ("--n",)),
    Case("sample-n-negative", f"{SAMPLE} --out {{t}}/s --n -3", U, ("--n",)),
    Case("sample-n-and-masks", f"{SAMPLE} --out {{t}}/s --n 2 --masks {{ph}}", U, ("--n", "--masks")),
    Case("sample-neither", f"{SAMPLE} --out {{t}}/s", U, ("--n", "--masks")),
    Case("sample-seed-negative", f"{SAMPLE} --out {{t}}/s --n 2 --seed -1", U, ("--seed",)),
    Case("sample-masks-label-7", f"{SAMPLE} --out {{t}}/s --masks {{bad_label7}}", D, ("{bad_label7}", "0..3")),
    Case("sample-model-missing", "sample --model {t}/nowhere --out {t}/s --n 2", D, ("{t}/nowhere",)),
    Case("sample-model-version-abc", "sample --model {badm_version} --out {t}/s --n 2", D, ("format_version",)),
    Case("sample-model-config-list", "sample --model {badm_list} --out {t}/s --n 2", D, ("{badm_list}", "JSON object")),
    Case("sample-model-no-params", "sample --model {badm_noparams} --out {t}/s --n 2", D, ("{badm_noparams}",)),
    Case("sample-model-format", "sample --model {badm_format} --out {t}/s --n 2", D, ("{badm_format}", "format")),
    Case("sample-model-unknown-gen", "sample --model {badm_unknown} --out {t}/s --n 2", P, ("no-such-gen",)),
    Case("sample-model-other-weights", "sample --model {badm_weights} --out {t}/s --n 2", D, ("{badm_weights}",)),
    Case("sample-model-garbage-weights", "sample --model {badm_garbage} --out {t}/s --n 2", D, ("image.safetensors",)),
    # ---- audit
    Case("audit-out-is-train", f"{AUDIT} --out {{ph}}", U, ("--train", "{ph}")),
    Case("audit-out-inside-holdout", f"{AUDIT} --out {{ph5}}/a", U, ("--holdout", "lies inside")),
    Case(
        "audit-train-nan",
        "audit --train {bad_nan} --holdout {ph5} --synthetic {ph1} --out {t}/a",
        D,
        ("{bad_nan}", "NaN"),
    ),
    Case("audit-alpha-0", f"{AUDIT} --out {{t}}/a --alpha 0", U, ("--alpha",)),
    Case("audit-resamples-0", f"{AUDIT} --out {{t}}/a --resamples 0", U, ("--resamples",)),
    Case("audit-feature-bogus", f"{AUDIT} --out {{t}}/a --feature bogus", U, ("--feature",)),
    Case("audit-pixel-views-bogus", f"{AUDIT} --out {{t}}/a --pixel-views bogus", U, ("--pixel-views",)),
    Case(
        "audit-holdout-one-patient",
        "audit --train {ph} --holdout {ph1} --synthetic {ph5} --out {t}/a --feature pixel",
        D,
        ("holdout",),
    ),
    # ---- report / compare / gate
    Case("report-out-is-dir", "report {run} --out {t}", U, ("--out", "is a directory")),
    Case("report-out-is-report-json", "report {run} --out {run}/report.json", U, ("lies inside", "{run}")),
    Case("report-out-inside-run", "report {run} --out {run}/other.html", U, ("lies inside", "{run}")),
    Case("report-out-foreign-file", "report {run} --out {foreign_html}", U, ("{foreign_html}", "did not write")),
    Case("report-out-under-file", "report {run} --out {file}/x.html", U, ("{file}",)),
    Case("report-missing-run", "report {t}/nowhere", U, ("{t}/nowhere",)),
    Case("compare-out-is-file", "compare {run} {run2} --out {file}", U, ("--out", "{file}")),
    Case("compare-out-is-run", "compare {run} {run2} --out {run}", U, ("is the input", "{run}")),
    Case("compare-out-inside-run", "compare {run} {run2} --out {run2}/cmp", U, ("lies inside", "{run2}")),
    Case("compare-out-foreign", "compare {run} {run2} --out {foreign}", U, ("{foreign}", "did not write")),
    Case("gate-junit-is-dir", "gate {run} --junit {t}", U, ("--junit", "is a directory")),
    Case("gate-junit-is-report", "gate {run} --junit {run}/report.json", U, ("--junit", "lies inside")),
    Case("gate-junit-foreign-file", "gate {run} --junit {file}", U, ("--junit", "{file}", "did not write")),
    Case("gate-policy-nan", "gate {run} --policy {policy_nan}", U, ("{policy_nan}", "copy_rate")),
    Case("gate-policy-inf", "gate {run} --policy {policy_inf}", U, ("{policy_inf}", "mia_auc")),
    Case("gate-policy-missing", "gate {run} --policy {t}/none.toml", U, ("{t}/none.toml",)),
    # ---- parameters checked before anything is written (found by a second hostile pass)
    Case("run-set-unknown-param", f"{RUN} --out {{t}}/r --set nosuchparam=3", U, ("nosuchparam",)),
    Case("run-set-steps-negative", f"{RUN} --out {{t}}/r --set steps=-5", U, ("steps",)),
    Case("run-set-steps-abc", f"{RUN} --out {{t}}/r --set steps=abc", U, ("steps", "abc")),
    Case("fit-set-steps-abc", f"{FIT} --out {{t}}/m --set steps=abc", U, ("steps", "abc")),
    Case("fit-set-lr-nan", f"{FIT} --out {{t}}/m --set lr=NaN", U, ("lr",)),
    Case("run-device-bogus", f"{RUN} --out {{t}}/r --device tpu", U, ("--device",)),
    Case("phantom-out-unwritable", f"{PH} --out /proc/cmraudit-x", D, ("/proc/cmraudit-x",)),
    Case("unknown-option", "data phantom --bogus", U, ("--bogus",)),
    Case("unknown-command", "nosuchcmd", U, ("nosuchcmd",)),
    # ---- sweep
    Case("sweep-no-dp-support", "sweep -g noise --epsilons 1 --data {ph} --out {t}/s", U, ("--dp-epsilon", "noise")),
    Case(
        "sweep-bad-param",
        "sweep -g ddpm --preset micro --epsilons inf --data {ph} --out {t}/s --set steps=0",
        U,
        ("steps",),
    ),
    Case("sweep-epsilons-abc", "sweep -g ddpm --epsilons abc --data {ph} --out {t}/s", U, ("--epsilons",)),
    Case("sweep-out-is-data", "sweep -g ddpm --preset micro --data {ph} --out {ph}", U, ("{ph}", "--data")),
    Case("sweep-seed-negative", "sweep -g ddpm --preset micro --data {ph} --out {t}/s --seed -1", U, ("--seed",)),
    # ---- hostile plugins: never fail open
    Case("plugin-sys-exit-at-import", "run -g exitgen --data {ph} --out {t}/r", P, ("exitgen", "SystemExit"), True),
    Case("plugin-kbint-at-import", "run -g kbgen --data {ph} --out {t}/r", P, ("kbgen", "KeyboardInterrupt"), True),
    Case(
        "plugin-baseexception-at-import",
        "fit -g basegen --data {ph} --out {t}/m",
        P,
        ("basegen", "BaseException"),
        True,
    ),
    Case("plugin-constructor-raises", "fit -g ctorgen --data {ph} --out {t}/m", P, ("ctorgen", "constructor"), True),
    Case("plugin-fit-raises", "fit -g fitgen --data {ph} --out {t}/m", P, ("fitgen", "fit exploded"), True),
    Case("plugin-check-broken", "generators check exitgen", P, ("exitgen",), True),
]
