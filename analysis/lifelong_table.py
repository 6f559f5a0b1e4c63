"""``kdsuite table --layout lifelong``: class-incremental results (lifelong distillation, survey §5.8).

Role in the flow: reads the lifelong metrics that ``lwf`` / ``icarl`` records carry
(:func:`kdsuite.methods.components.incremental.lifelong_metrics`): one row per method variant (``lwf``
with λ = 0 is fine-tuning, named so), one column per (student, number of tasks); each cell gives the
average accuracy over all tasks after the last one and the forgetting (mean over the earlier tasks of their
best accuracy minus their last), mean ± sample std over distinct seeds (n). A diverged run makes its cell
``div.``, never a number.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from kdsuite.analysis.tables import stats
from kdsuite.core.errors import ConfigError
from kdsuite.methods.registry import method_display_name
from kdsuite.zoo.names import paper_name


def _row_label(r: Dict[str, Any]) -> str:
    variant = dict(r.get("variant") or {})
    variant.pop("tasks", None)
    hp = ((r.get("config") or {}).get("method") or {}).get("hparams") or {}
    name = method_display_name(r["method"])
    if r["method"] == "lwf" and float(hp.get("lam", 1.0)) == 0.0:
        variant.pop("lam", None)
        name = "Fine-tuning (LwF, λ = 0)"
    return name + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(variant.items())) + ")" if variant else "")


def collect(records: List[Dict[str, Any]]) -> Dict[str, Any]:
    cells: Dict[Tuple[str, str], Dict[int, Dict[str, Any]]] = {}
    for r in records:
        m = r.get("metrics") or {}
        if "avg_acc" not in m and not (r.get("status") == "diverged" and r.get("category") == "lifelong"):
            continue
        tasks = m.get("tasks") or ((r.get("config") or {}).get("method") or {}).get("hparams", {}).get("tasks")
        col = f"{paper_name(r.get('student') or '?')}, {tasks} tasks"
        seed = r.get("seed")
        cell = cells.setdefault((_row_label(r), col), {})
        cell[seed] = {"diverged": r.get("status") == "diverged", "avg": m.get("avg_acc"), "fgt": m.get("forgetting")}
    if not cells:
        raise ConfigError("--layout lifelong: no finished run of these records carries lifelong metrics (methods "
                          "of category lifelong: lwf, icarl; see experiments/grids/cifar100_lifelong.yaml)")
    rows = sorted({k[0] for k in cells}, key=lambda s: (not s.startswith("Fine-tuning"), s))
    cols = sorted({k[1] for k in cells}, key=lambda c: (c.split(",")[0], int(c.split(", ")[1].split()[0])))
    return {"rows": rows, "cols": cols, "cells": cells}


def _mean_std(values: List[float]) -> str:
    s = stats(values)
    return f"{s['mean']:.1f} ± {s['std']:.1f}" if s["n"] > 1 else f"{s['mean']:.1f}"


def cell_text(cell: Dict[int, Dict[str, Any]]) -> str:
    if any(v["diverged"] for v in cell.values()):
        return f"div. ({sum(v['diverged'] for v in cell.values())}/{len(cell)})"
    avg = [v["avg"] for v in cell.values()]
    fgt = [v["fgt"] for v in cell.values()]
    return f"{_mean_std(avg)} / {_mean_std(fgt)} ({len(cell)})"


CAPTION = ("Class-incremental results: average accuracy over all tasks after the last (%, higher is better) / "
           "forgetting (points, lower is better), mean ± sample std over seeds (n).")


def to_markdown(t: Dict[str, Any]) -> str:
    lines = [CAPTION, "", "| Method | " + " | ".join(t["cols"]) + " |", "|---|" + "---:|" * len(t["cols"])]
    for row in t["rows"]:
        cells = [cell_text(t["cells"][(row, c)]) if (row, c) in t["cells"] else "–" for c in t["cols"]]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_csv(t: Dict[str, Any]) -> str:
    import pandas as pd

    rows = []
    for (row, col), cell in t["cells"].items():
        for seed, v in sorted(cell.items(), key=lambda kv: str(kv[0])):
            rows.append({"method": row, "column": col, "seed": seed, "diverged": v["diverged"],
                         "avg_acc": v["avg"], "forgetting": v["fgt"]})
    return pd.DataFrame(rows).to_csv(index=False)


def to_latex(t: Dict[str, Any], label: str = "tab:kdsuite-lifelong") -> str:
    from kdsuite.analysis.tables import latex_escape

    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             r"\begin{tabular}{l" + "c" * len(t["cols"]) + "}", r"\toprule",
             "Method & " + " & ".join(latex_escape(c) for c in t["cols"]) + r" \\", r"\midrule"]
    for row in t["rows"]:
        cells = [latex_escape(cell_text(t["cells"][(row, c)])) if (row, c) in t["cells"] else "--" for c in t["cols"]]
        lines.append(latex_escape(row) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", rf"\caption{{{latex_escape(CAPTION)}}}", rf"\label{{{label}}}",
              r"\end{table}"]
    return "\n".join(lines)
