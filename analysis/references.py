"""Published reference numbers shipped as data (``analysis/references/*.csv``) and their lookup.

Role in the flow: ``kdsuite table --reference NAME`` puts the published number (and the difference)
beside each reproduced cell. Every CSV row cites its source; the columns are

    method, teacher, student, teacher_arch, student_arch, dataset, metric, value, std, epoch_policy, source, note

``teacher_arch`` / ``student_arch`` are this suite's model names (``cifar_resnet32x4``, timm's ``resnet18``),
empty where the paper's model has no counterpart here; ``method`` is this suite's method name (``vanilla``
for the plain student, ``teacher`` for the teacher's own accuracy); ``epoch_policy`` says whether the
source reports the last or the best epoch. The numbers were transcribed from the sources named in each
row (see also ``../shared/reference-numbers.md`` in the development checkout).

A reference NAME is a file stem (``repdistiller_cifar100``) or its first word (``repdistiller``,
``dkd``, ``dist``, ``imagenet``, ``survey``, ``other``, ``logit``, ``ofa``); ``all`` reads every file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from kdsuite.core.errors import ConfigError

REF_DIR = Path(__file__).parent / "references"
COLUMNS = ["method", "teacher", "student", "teacher_arch", "student_arch", "dataset", "metric", "value", "std",
           "epoch_policy", "source", "note"]


def available() -> Dict[str, Path]:
    """Every reference file by its stem."""
    return {p.stem: p for p in sorted(REF_DIR.glob("*.csv"))}


def _files_for(name: str) -> List[Path]:
    files = available()
    if name == "all":
        return list(files.values())
    if name in files:
        return [files[name]]
    hits = [p for stem, p in files.items() if stem.split("_")[0] == name]
    if hits:
        return hits
    names = sorted(set(files) | {s.split("_")[0] for s in files} | {"all"})
    raise ConfigError(f"--reference {name!r}: no such reference; available: {', '.join(names)}")


def load(name: str) -> pd.DataFrame:
    """The rows of reference ``name`` (all its files, in file order), with their file's stem in ``file``."""
    frames = []
    for p in _files_for(name):
        df = pd.read_csv(p, dtype={"teacher_arch": str, "student_arch": str}, keep_default_na=False,
                         na_values={"value": [""], "std": [""]})
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ConfigError(f"reference file {p}: missing column(s) {missing}; expected {COLUMNS}")
        if df["source"].eq("").any():
            raise ConfigError(f"reference file {p}: every row must cite its source (empty 'source' in row(s) "
                              f"{[i + 2 for i in df.index[df['source'].eq('')]]})")
        frames.append(df.assign(file=p.stem))
    return pd.concat(frames, ignore_index=True)


def row_method(label: str) -> str:
    """Method name of a comparison-table row label (the teacher and vanilla rows have fixed names)."""
    from kdsuite.analysis.tables import TEACHER, VANILLA

    return {TEACHER: "teacher", VANILLA: "vanilla"}.get(label, label)


def match(table: Dict[str, Any], ref: pd.DataFrame, dataset: str, name: str) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """``{(row label, column): {"value", "std", "source", "epoch_policy"}}`` for every cell of ``table``
    with a published number for the same method, teacher architecture(s), student architecture and
    dataset. Raises when the reference holds no number of ``dataset`` at all."""
    ref = ref[ref["metric"] == "top1"]
    if not (ref["dataset"] == dataset).any():
        raise ConfigError(f"--reference {name!r} holds numbers for dataset(s) {sorted(set(ref['dataset']))}; "
                          f"these records are on {dataset!r}: nothing to compare")
    ref = ref[ref["dataset"] == dataset]
    out: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for label, _cat, _cells in table["rows"]:
        method = (table.get("row_methods") or {}).get(label) or row_method(label)
        for c in table["columns"]:
            t_arch, s_arch = table["column_archs"][c]
            hit = ref[(ref["method"] == method) & (ref["teacher_arch"] == t_arch) & (ref["student_arch"] == s_arch)]
            if len(hit):
                r = hit.iloc[0]
                out[(label, c)] = {"value": float(r["value"]), "std": None if pd.isna(r["std"]) else float(r["std"]),
                                   "source": r["source"], "epoch_policy": r["epoch_policy"] or None}
    return out


# the epoch policy each table metric corresponds to: published "best" numbers are the best epoch chosen on
# the test split (the literature's convention), i.e. this suite's best-test; best (chosen on a validation
# split) is the same kind of number selected honestly, so a published best sits beside it marked
POLICY_OF_METRIC = {"last_top1": "last", "best_top1": "best", "best_test_top1": "best"}


def comparable(policy: Optional[str], metric: str) -> Optional[bool]:
    """Whether a published number of ``epoch_policy`` ``policy`` (last / best / unstated) can be set
    against a table of ``metric`` (``last_top1`` / ``best_top1`` / ``best_test_top1``): True, False, or
    None when the source does not say. Against ``best_top1`` a published best is True but
    :func:`selected_on_test` marks it."""
    if not policy:
        return None
    return policy == POLICY_OF_METRIC.get(metric, metric.replace("_top1", ""))


def selected_on_test(policy: Optional[str], metric: str) -> bool:
    """A published best-on-test number beside this suite's best-on-validation cell (comparable, marked)."""
    return policy == "best" and metric == "best_top1"


def attach(table: Dict[str, Any], name: Optional[str], dataset: str) -> Dict[str, Any]:
    """``table`` with ``refs`` and ``reference`` set from reference ``name`` (unchanged when None). Each
    reference carries ``comparable`` (:func:`comparable`): renderers give no difference where the
    published number comes from another epoch than the table's, and mark an unstated policy."""
    if not name:
        return table
    refs = match(table, load(name), dataset, name)
    for r in refs.values():
        r["comparable"] = comparable(r.get("epoch_policy"), table["metric"])
        r["selected_on_test"] = selected_on_test(r.get("epoch_policy"), table["metric"])
    return dict(table, refs=refs, reference=name)
