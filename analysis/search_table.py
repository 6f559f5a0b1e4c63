"""``kdsuite table --layout search``: what an architecture search (NAS-based distillation, §5.9) found.

Role in the flow: reads the ``search`` entry of searched runs' records (written by
:mod:`kdsuite.experiments.search` when the run chose its student). One block per search (the candidate
stage and its proxy method): every candidate architecture with its parameter count and proxy score (mean ±
sample std over its seeds, the number of seeds), the chosen one marked; under it, the chosen student
trained fully by each method (test top-1, mean ± std over seeds) — what the choice was for.
"""
from __future__ import annotations

from typing import Any, Dict, List

from kdsuite.zoo.names import paper_name
from kdsuite.core.errors import ConfigError
from kdsuite.methods.registry import method_display_name


def searches(records: List[Dict[str, Any]], metric: str) -> List[Dict[str, Any]]:
    """One entry per distinct search (same candidate runs) with its ranking and the runs trained on its choice."""
    out: Dict[tuple, Dict[str, Any]] = {}
    for r in records:
        s = r.get("search")
        if not s or r.get("status") != "finished":
            continue
        key = tuple(sorted(c["config_hash"] or c["run"] for c in s["candidates"]))
        entry = out.setdefault(key, {"stage": s.get("stage"), "proxy": s["proxy"], "chosen": s["chosen"],
                                     "ranking": s["ranking"], "trained": {}})
        label = f"{method_display_name(r['method'])} ({'+'.join(paper_name(t) for t in r.get('teachers') or [])}→)"
        value = (r.get("metrics") or {}).get(metric)
        if value is not None:
            entry["trained"].setdefault(label, []).append(float(value))
    if not out:
        raise ConfigError("--layout search: no finished run of these records has a searched student (a grid pair "
                          "`student: {search: STAGE}`); see experiments/grids/demo.yaml, stage nas")
    return list(out.values())


def _score(r: Dict[str, Any]) -> str:
    if r["mean_score"] is None:
        return f"div. ({r['diverged']})"
    std = f" ± {r['std_score']:.3f}" if r["std_score"] is not None else ""
    return f"{r['mean_score']:.3f}{std} ({r['seeds']})" + (f", {r['diverged']} div." if r["diverged"] else "")


def _acc(values: List[float]) -> str:
    """A cell as the methods table writes it: ``mean ± std (n)``."""
    from kdsuite.analysis.tables import _fmt, stats

    return _fmt(stats(values))


def to_markdown(found: List[Dict[str, Any]], metric_text: str) -> str:
    parts = []
    for s in found:
        lines = [f"**Search `{s['stage']}`** — proxy {method_display_name(s['proxy'])}; candidates ranked by "
                 f"mean proxy score on the validation split (higher is better), ± sample std over seeds (n).", "",
                 "| Candidate | Params | Proxy score | Chosen |", "|---|---:|---:|:---:|"]
        for r in s["ranking"]:
            lines.append(f"| {paper_name(r['arch'])} | {r['params'] / 1e3:.0f}k | {_score(r)} | "
                         f"{'✓' if r['arch'] == s['chosen'] else ''} |")
        lines.append("")
        for label, values in sorted(s["trained"].items()):
            lines.append(f"Chosen {paper_name(s['chosen'])} trained by {label}: {_acc(values)} — {metric_text}.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def to_csv(found: List[Dict[str, Any]]) -> str:
    import pandas as pd

    rows = [{"stage": s["stage"], "proxy": s["proxy"], "candidate": r["arch"], "params": r["params"],
             "mean_score": r["mean_score"], "std_score": r["std_score"], "seeds": r["seeds"],
             "diverged": r["diverged"], "chosen": r["arch"] == s["chosen"]} for s in found for r in s["ranking"]]
    return pd.DataFrame(rows).to_csv(index=False)


CHECK = r"$\surd$"  # base LaTeX (\checkmark needs amssymb)


def to_latex(found: List[Dict[str, Any]], metric_text: str, label: str = "tab:kdsuite-search") -> str:
    from kdsuite.analysis.tables import latex_escape

    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lrrc}", r"\toprule",
             r"Candidate & Params & Proxy score & Chosen \\"]
    notes = []
    for s in found:
        lines += [r"\midrule", rf"\multicolumn{{4}}{{l}}{{\emph{{Search {latex_escape(s['stage'])}, proxy "
                               rf"{latex_escape(method_display_name(s['proxy']))}}}}} \\"]
        for r in s["ranking"]:
            mark = CHECK if r["arch"] == s["chosen"] else ""
            lines.append(rf"{latex_escape(paper_name(r['arch']))} & {r['params'] / 1e3:.0f}k & "
                         rf"{latex_escape(_score(r))} & {mark} \\")
        for lab, values in sorted(s["trained"].items()):
            notes.append(f"Chosen {paper_name(s['chosen'])} trained by {lab}: {_acc(values)}")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = ("Architecture search: candidates ranked by mean proxy score on the validation split (higher is "
               "better), $\\pm$ sample std over seeds (n). " + latex_escape("; ".join(notes) + f" ({metric_text})."))
    return "\n".join(lines + [rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}"])
