"""``kdsuite table --layout lifelong``: every cell recomputed by hand from the records' accuracy matrices."""
import shutil
import statistics

import pytest

from kdsuite.analysis.cli_table import render_table
from kdsuite.core.records import load_records
from kdsuite.experiments.grid import expand
from kdsuite.slurm.executors import run_in_process


def _forgetting(matrix):
    n = len(matrix)
    return statistics.fmean(max(matrix[t][i] for t in range(i, n - 1)) - matrix[-1][i] for i in range(n - 1))


def test_lifelong_cells_are_average_accuracy_and_forgetting_over_seeds(tmp_path):
    g = expand({"name": "ll", "output": str(tmp_path / "runs"),
                "defaults": {"dataset": {"name": "digits", "batch_size": 64}, "epochs": 1, "max_steps_per_epoch": 6,
                             "progress": "none"},
                "stages": {"ll": {"axes": {"method": ["lwf"], "method.hparams.lam": [0.0, 1.0],
                                           "method.hparams.tasks": [2], "pair": [{"student": "cifar_resnet8"}],
                                           "seed": [0, 1]}}}})
    assert run_in_process(g)["failed"] == 0
    records = load_records(tmp_path / "runs")
    md = render_table(records, "lifelong", "md", "last")
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in md.splitlines() if ln.startswith("| ") and "Method" not in ln}
    assert set(lines) == {"Fine-tuning (LwF, λ = 0)", "LwF"}
    for label, lam in (("Fine-tuning (LwF, λ = 0)", 0.0), ("LwF", 1.0)):
        recs = [r for r in records if r["config"]["method"]["hparams"]["lam"] == lam]
        avg = [statistics.fmean(r["metrics"]["acc_matrix"][-1]) for r in recs]
        fgt = [_forgetting(r["metrics"]["acc_matrix"]) for r in recs]
        want = (f"{statistics.fmean(avg):.1f} ± {statistics.stdev(avg):.1f} / "
                f"{statistics.fmean(fgt):.1f} ± {statistics.stdev(fgt):.1f} (2)")
        assert lines[label].endswith(f"| {want} |"), (lines[label], want)
    assert "ResNet8, 2 tasks" in md
    tex = render_table(records, "lifelong", "latex", "last")
    assert r"$\lambda$" in tex and "λ" not in tex and r"\label{tab:kdsuite-lifelong}" in tex
    if shutil.which("pdflatex"):  # compiles in a one-column article without an overfull box or a missing glyph
        from tests.test_latex_compile import _compile

        log = _compile(tmp_path, "ll", "", tex)
        assert "Overfull \\hbox" not in log and "Missing character" not in log
    # a class-incremental top-1 is not a student's top-1: the methods and categories tables leave them out, by name
    with pytest.raises(Exception, match=r"--layout methods: nothing to compare. Not in this table: 4 class-incremental \(lifelong\) run"):
        render_table(records, "methods", "md", "last")
    with pytest.raises(Exception, match="no finished run of these records carries lifelong metrics"):
        render_table([dict(r, metrics={"last_top1": 1.0}) for r in records], "lifelong", "md", "last")
