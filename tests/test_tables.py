"""Runs to paper tables: a real offline-W&B grid, tables checked cell by cell against statistics computed
here, LaTeX escaping, the taxonomy summary, published references, plots, and the errors of bad sources."""
import glob
import json
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdsuite.analysis import references
from kdsuite.analysis.cli_table import render_table
from kdsuite.analysis.plots import gain_data
from kdsuite.analysis.tables import category_summary, comparison, latex_escape, runs_frame, to_latex
from kdsuite.cli import main
from kdsuite.methods.registry import CATEGORIES, list_methods
from tests.wandb_offline import summarise


def _grid(root):
    return {"name": "tabgrid", "output": str(root), "defaults": {
        "dataset": {"name": "digits", "batch_size": 64}, "epochs": 2, "max_steps_per_epoch": 3, "progress": "none",
        "wandb": {"mode": "offline", "project": "kdsuite-test"}},
        "stages": {"teachers": {"runs": [{"key": "t", "student": "cifar_resnet14"}]},
                   "students": {"needs": "teachers", "axes": {
                       "method": ["vanilla", "kd", "dml"], "seed": [0, 1],
                       "pair": [{"teachers": ["t"], "student": "cifar_resnet8"}]}}}}


def _cell(md, row):
    line = next(l for l in md.splitlines() if l.startswith(f"| {row} |"))
    return line.split("|")[3].strip().strip("*")


def test_offline_grid_writes_wandb_runs_and_its_table_matches_the_records(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump(_grid(tmp_path / "out"), sort_keys=False))
    assert main(["grid", "launch", str(gfile), "--cluster", "local"]) == 0
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").rglob("record.json"))]
    assert len(recs) == 7 and all(r["status"] == "finished" for r in recs)
    for r in recs:
        logs = glob.glob(f"{r['run_dir']}/wandb/offline-run-*/run-*.wandb")
        assert len(logs) == 1, r["run_dir"]
        w = summarise(logs[0])
        assert w["run"].run_group == "tabgrid" and w["run"].project == "kdsuite-test"
        assert {r["category"], r["method"], r["pair"], "digits"} <= set(w["run"].tags)
        assert w["config"]["kdsuite"]["config_hash"] == r["config_hash"]
        assert w["config"]["method"]["name"] == r["method"] and w["config"]["seed"] == r["seed"]
        m = r["metrics"]
        for k in ("best_top1", "last_top1", "last_top5", "student_params", "wall_time_s", "images_per_s"):
            assert w["summary"][f"final/{k}"] == pytest.approx(m[k]), k
        if r["teachers"]:
            assert w["summary"]["final/teacher_top1"] == pytest.approx(m["teacher_top1"][0])
        val = [h["val/student/top1"] for h in w["history"] if "val/student/top1" in h]
        assert val == pytest.approx([h["val/student/top1"] for h in r["history"]])

    capsys.readouterr()
    assert main(["table", "--source", str(tmp_path / "out")]) == 0
    md = capsys.readouterr().out
    students = [r for r in recs if not r.get("teacher_export")]
    for method, row in (("vanilla", "Student (vanilla)"), ("kd", "kd"), ("dml", "dml")):
        vals = [r["metrics"]["last_top1"] for r in students if r["method"] == method]
        assert _cell(md, row) == f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f} (2)"
    teacher = next(r for r in recs if r.get("teacher_export"))
    assert _cell(md, "Teacher") == f"{teacher['metrics']['last_top1']:.2f} (1)"
    best = max(("Student (vanilla)", "kd", "dml"), key=lambda row: float(_cell(md, row).split()[0]))
    assert re.search(rf"\| {re.escape(best)} \| [^|]+ \| \*\*", md)


def _rec(method, seed, top1, student="cifar_resnet8", teachers=("cifar_resnet20",), dataset="digits", best=None):
    from kdsuite.methods.registry import get_method

    cls = get_method(method)
    teachers = [] if cls.num_teachers == 0 else list(teachers)
    sname = student.replace("cifar_", "")
    tnames = [t.replace("cifar_", "") for t in teachers]
    return {"run_id": f"{method}{seed}{student}{teachers}", "name": "g", "method": method, "category": cls.category,
            "scheme": cls.scheme, "dataset": dataset, "student": student, "student_name": sname, "teachers": teachers,
            "teacher_names": tnames, "pair": ("+".join(tnames) + "→" + sname) if tnames else sname, "seed": seed,
            "status": "finished", "history": [],
            "metrics": {"last_top1": top1, "best_top1": best if best is not None else top1 + 1,
                        # best = test at the best-validation epoch; best-test (max over epochs) is above it
                        "best_val_top1": 99.0, "best_test_top1": (best if best is not None else top1 + 1) + 0.5,
                        "teacher_top1": [90.0] if teachers else []}}


SYNTH = [
    *[_rec("vanilla", s, v) for s, v in enumerate([60.0, 62.0, 64.0])],
    *[_rec("kd", s, v) for s, v in enumerate([70.0, 71.0, 75.0])],
    *[_rec("dkd", s, v) for s, v in enumerate([66.0, 69.0])],
    *[_rec("fitnet_1stage", s, v) for s, v in enumerate([61.0, 63.0])],
    *[_rec("dml", s, v) for s, v in enumerate([65.0, 65.0, 68.0])],
    # a second pair where only kd ran: every other cell of that column must be missing, not 0
    *[_rec("vanilla", s, v, student="cifar_resnet14") for s, v in enumerate([80.0, 82.0])],
    _rec("kd", 0, 85.0, student="cifar_resnet14"),
]


def test_comparison_cells_missing_cells_and_best_per_column():
    t = comparison(runs_frame(SYNTH), "last_top1")
    assert t["columns"] == ["resnet20→resnet8", "resnet20→resnet14"]
    rows = {label: cells for label, _cat, cells in t["rows"]}
    for label, vals in (("kd", [70.0, 71.0, 75.0]), ("dkd", [66.0, 69.0]), ("Student (vanilla)", [60.0, 62.0, 64.0])):
        c = rows[label]["resnet20→resnet8"]
        assert c["mean"] == pytest.approx(statistics.mean(vals)) and c["std"] == pytest.approx(statistics.stdev(vals))
        assert c["n"] == len(vals)
    assert rows["dkd"]["resnet20→resnet14"] is None and rows["fitnet_1stage"]["resnet20→resnet14"] is None
    # dml has no teacher: it belongs to the column of its student
    assert rows["dml"]["resnet20→resnet8"]["mean"] == pytest.approx(66.0)
    assert rows["kd"]["resnet20→resnet14"] == {"mean": 85.0, "std": 0.0, "n": 1}
    md = render_table(SYNTH, "methods", "md", "last")
    assert "| dkd | Response-based knowledge | 67.50 ± 2.12 (2) | – |" in md
    assert "| kd | Response-based knowledge | **72.00 ± 2.65 (3)** | **85.00 (1)** |" in md
    best_md = render_table(SYNTH, "methods", "md", "best")
    assert "| dkd | Response-based knowledge | 68.50 ± 2.12 (2) | – |" in best_md
    # category order follows the survey taxonomy: response before feature before online
    labels = [label for label, _c, _cells in t["rows"]]
    assert labels.index("kd") < labels.index("fitnet_1stage") < labels.index("dml")


def test_latex_is_booktabs_and_escapes_every_name():
    assert latex_escape("a_b & 50% #1 {x} ~y^z \\") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}y\textasciicircum{}z \textbackslash{}"
    tex = render_table(SYNTH, "methods", "latex", "last")
    assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1 and r"\begin{tabular}{lcc}" in tex
    # rows and headers with the display names (registry keys in Markdown, paper names in LaTeX)
    assert r"FitNet (1-stage) & 62.00$\pm$1.41 {\scriptsize (2)} & -- \\" in tex
    assert r"\multicolumn{3}{@{}l}{\emph{Feature-based knowledge}} \\" in tex  # the category heads its block
    assert r"\textbf{72.00$\pm$2.65} {\scriptsize (3)}" in tex
    assert r"\begin{tabular}[t]{@{}c@{}}ResNet20 \\ $\rightarrow$ResNet8\end{tabular}" in tex  # header, 2 lines
    assert "fitnet" not in tex and "| resnet20→resnet8 |" not in render_table(SYNTH, "methods", "md", "last")
    assert "| ResNet20→ResNet8 | ResNet20→ResNet14 |" in render_table(SYNTH, "methods", "md", "last")
    # a single seed has no ±, the label is there, minus signs are real ones
    assert r"\textbf{85.00} {\scriptsize (1)}" in tex and r"\label{tab:kdsuite-methods}" in tex
    assert "(n $-$ 1)" in tex and r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%" in tex
    cat = render_table(SYNTH, "categories", "latex", "last")
    van8 = statistics.mean([60.0, 62.0, 64.0])
    fit_gain = statistics.mean([61.0, 63.0]) - van8  # one cell: no ± (was "±0.00")
    assert f"& {'$+$' if fit_gain >= 0 else '$-$'}{abs(fit_gain):.2f} (1) &" in cat and r"\label{tab:kdsuite-categories}" in cat
    assert r"\S{}2.1" in cat and "§" not in cat
    neg = render_table([_rec("vanilla", 0, 70.0), _rec("kd", 0, 65.0)], "categories", "latex", "last")
    assert "$-$5.00 (1)" in neg and "-5.00" not in neg.replace("$-$", "")
    body = tex.split(r"\midrule", 1)[1]
    # no unescaped special character outside the commands we emit
    stripped = re.sub(r"\\[a-zA-Z]+|\\[_&%#{}$]|\$\\pm\$|\$\\rightarrow\$|[{}]", "", body)
    assert not re.search(r"[_&%#^~]", stripped.replace("&", "")), stripped
    # every row has as many cells as the header
    for line in tex.splitlines():
        if line.endswith(r"\\") and not line.startswith(r"\multicolumn{3}"):  # a category's heading spans all
            assert line.count(" & ") == 2, line


def test_category_summary_gains_over_vanilla():
    rows = {r["category"]: r for r in category_summary(runs_frame(SYNTH), "last_top1")}
    van8, van14 = statistics.mean([60.0, 62.0, 64.0]), statistics.mean([80.0, 82.0])
    kd_cells = [statistics.mean([70.0, 71.0, 75.0]) - van8, 85.0 - van14]
    dkd_cells = [statistics.mean([66.0, 69.0]) - van8]
    resp = rows["response"]
    assert resp["gain"]["mean"] == pytest.approx(statistics.mean(kd_cells + dkd_cells))
    assert resp["gain"]["std"] == pytest.approx(statistics.stdev(kd_cells + dkd_cells)) and resp["gain"]["n"] == 3
    assert resp["best"][0] == "kd" and resp["best"][1] == pytest.approx(statistics.mean(kd_cells))
    assert resp["methods"] == ["dkd", "kd"] and resp["runs"] == 6 and resp["axis"] == CATEGORIES["response"].knowledge
    assert rows["online"]["gain"]["mean"] == pytest.approx(statistics.mean([65.0, 65.0, 68.0]) - van8)
    assert "baseline" not in rows
    csv = pd.read_csv(pd.io.common.StringIO(render_table(SYNTH, "categories", "csv", "last")))
    assert list(csv["category"]) == ["response", "feature", "online"]
    assert "| Online distillation | scheme (§3.2) | online | dml | 3 | +4.00 (1) | dml (+4.00) |" in \
        render_table(SYNTH, "categories", "md", "last")


def test_long_csv_has_one_row_per_run():
    csv = pd.read_csv(pd.io.common.StringIO(render_table(SYNTH, "runs", "csv", "last")))
    assert len(csv) == len(SYNTH) and csv["last_top1"].tolist() == [r["metrics"]["last_top1"] for r in SYNTH]


def test_reference_files_are_complete_and_cited():
    every = references.load("all")
    assert len(every) > 250 and not (every["source"] == "").any()
    assert every["value"].between(0, 100).all() and set(every["metric"]) <= {"top1", "top1_error"}
    known = {c.name for c in list_methods()} | {"teacher", "vanilla", "crd+kd", "kd+ls", "dkd+ls", "deepinversion", "cmi",
                                   "fast_datafree", "one", "byot", "cs_kd", "tf_kd", "ps_kd", "aekd", "ca_mkd",
                                   # leaders_*.csv: variants and a method not yet built (MLKD needs two views)
                                   "mlkd", "mlkd+ls", "ctkd+ls", "wkd_f", "wkd_lf"}
    assert set(every["method"]) - known == set(), set(every["method"]) - known
    from kdsuite import zoo

    archs = set(every["teacher_arch"]) | set(every["student_arch"])
    unknown = [a for a in archs if a and not zoo.known_arch(a)]
    assert not unknown, f"reference architectures this zoo cannot build: {unknown}"
    rep = references.load("repdistiller")
    # the CRD README: 7 same-architecture pairs × 16 rows (teacher, student, 13 methods, CRD+KD) less FSP's
    # one n/a, and 6 cross-architecture pairs × 14 rows (no FSP, no CRD+KD)
    assert len(rep) == 7 * 16 - 1 + 6 * 14


def test_reference_beside_each_cell():
    recs = [_rec("kd", s, v, student="cifar_resnet8x4", teachers=("cifar_resnet32x4",), dataset="cifar100")
            for s, v in enumerate([73.0, 74.0])] + \
           [_rec("crd", 0, 75.0, student="cifar_resnet8x4", teachers=("cifar_resnet32x4",), dataset="cifar100")]
    t = references.attach(comparison(runs_frame(recs), "last_top1"), "repdistiller", "cifar100")
    kd = t["refs"][("kd", "resnet32x4→resnet8x4")]
    assert kd["value"] == 73.33 and "RepDistiller" in kd["source"]
    md = render_table(recs, "methods", "md", "last", reference="repdistiller")
    assert "73.50 ± 0.71 (2) [pub. 73.33, Δ +0.17]" in md and "75.00 (1)** [pub. 75.51, Δ −0.51]" in md
    csv = pd.read_csv(pd.io.common.StringIO(render_table(recs, "methods", "csv", "last", reference="repdistiller")))
    row = csv[csv["method"] == "crd"].iloc[0]
    assert row["published"] == 75.51 and row["delta"] == pytest.approx(75.0 - 75.51)


def _write_records(root, recs):
    for i, r in enumerate(recs):
        d = Path(root) / f"run{i}"
        d.mkdir(parents=True)
        (d / "record.json").write_text(json.dumps(r))


def test_bad_sources_fail_clearly_and_leave_no_file(tmp_path, capsys):
    out = tmp_path / "table.md"
    out.write_text("an earlier table")
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = tmp_path / "failed"
    _write_records(failed, [dict(_rec("kd", 0, 1.0), status="failed")])
    mixed = tmp_path / "mixed"
    _write_records(mixed, [_rec("kd", 0, 70.0), _rec("kd", 1, 70.0, dataset="cifar10")])
    good = tmp_path / "good"
    _write_records(good, SYNTH[:3])
    cases = [(["--source", str(tmp_path / "missing")], "does not exist"),
             (["--source", str(empty)], "no record.json at all"),
             (["--source", str(failed)], "found: 1 failed"),
             (["--source", str(mixed)], "mixes records of datasets {'cifar10': 1, 'digits': 1}"),
             (["--source", str(good), "--reference", "nosuch"], "available: all, "),
             (["--source", str(good), "--reference", "repdistiller"], "these records are on 'digits'"),
             (["--source", "wandb:only-one-part"], "wandb:ENTITY/PROJECT")]
    for argv, msg in cases:
        capsys.readouterr()
        assert main(["table", *argv, "--out", str(out)]) == 2, argv
        assert msg in capsys.readouterr().err, argv
        assert out.read_text() == "an earlier table" and len(list(tmp_path.glob("table.md*"))) == 1
    assert main(["table", "--source", str(good), "--out", str(out)]) == 0
    assert out.read_text().startswith("| Method |")


def test_plots_are_written_as_png_and_pdf(tmp_path):
    _write_records(tmp_path / "src", [dict(r, history=[{"epoch": e, "stage": "main", "val/student/top1": 10.0 * e}
                                                      for e in (1, 2, 3)]) for r in SYNTH])
    assert main(["plot", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "fig")]) == 0
    for stem in ("gain_by_category", "accuracy_by_pair", "training_curves"):
        assert (tmp_path / "fig" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "fig" / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    g = gain_data(runs_frame(SYNTH), "last_top1").set_index("method")
    van8, van14 = statistics.mean([60.0, 62.0, 64.0]), statistics.mean([80.0, 82.0])
    assert g.loc["kd", "gain"] == pytest.approx(statistics.mean([statistics.mean([70.0, 71.0, 75.0]) - van8, 85.0 - van14]))
    assert g.loc["kd", "err"] == pytest.approx(statistics.mean([statistics.stdev([70.0, 71.0, 75.0]), 0.0]))
    assert list(g.index) == ["dkd", "kd", "fitnet_1stage", "dml"]  # grouped in taxonomy order


def _kd(seed, top1, T, config_hash=None, status="finished"):
    r = _rec("kd", seed, top1)
    hp = {"T": float(T), "alpha": 0.1, "standardize": False}
    variant = {"T": float(T)} if T != 4 else {}
    return dict(r, config={"method": {"name": "kd", "hparams": hp}}, variant=variant, status=status,
                variant_label=", ".join(f"{k}={v:g}" for k, v in variant.items()),
                config_hash=config_hash or f"kd-T{T}-s{seed}")


def test_variants_are_separate_rows_and_seeds_are_counted_once():
    recs = [_kd(0, 80.0, 2), _kd(1, 81.0, 2), _kd(0, 96.0, 4), _kd(1, 97.0, 4),
            _kd(1, 97.0, 4),                           # a copy of the same run (same hash): counted once
            *[_rec("vanilla", s, 60.0 + s) for s in (0, 1)]]
    md = render_table(recs, "methods", "md", "last")
    assert _cell(md, "kd (T=2)") == f"{statistics.mean([80.0, 81.0]):.2f} ± {statistics.stdev([80.0, 81.0]):.2f} (2)"
    assert _cell(md, "kd (T=4)") == f"{statistics.mean([96.0, 97.0]):.2f} ± {statistics.stdev([96.0, 97.0]):.2f} (2)"
    assert not re.search(r"\| kd \|", md)
    # one seed run twice under different configs: averaged, counted once, flagged
    dup = recs + [_kd(1, 91.0, 4, config_hash="kd-T4-s1-other-data")]
    md = render_table(dup, "methods", "md", "last")
    per_seed = [96.0, statistics.mean([97.0, 91.0])]
    assert _cell(md, "kd (T=4)") == f"{statistics.mean(per_seed):.2f} ± {statistics.stdev(per_seed):.2f} (2)†"
    assert "†: a seed was run more than once" in md.split("\n\n")[-1]
    csv = pd.read_csv(pd.io.common.StringIO(render_table(dup, "methods", "csv", "last")))
    assert str(csv.set_index("method").loc["kd (T=4)", "duplicate_seeds"]).startswith("1")


def test_diverged_cells_show_div_never_numbers():
    recs = [_kd(0, 80.0, 4), _kd(1, 82.0, 4), _kd(2, 9.72, 4, status="diverged"),
            *[_rec("vanilla", s, 60.0 + s) for s in (0, 1)], _rec("dkd", 0, 70.0)]
    md = render_table(recs, "methods", "md", "last")
    assert _cell(md, "kd") == "div. (1/3)" and "9.72" not in md and "81.00" not in md
    assert "**70.00 (1)**" in md  # the best student is among the cells that have a number
    assert "diverged" in md.split("\n\n")[-1]
    tex = render_table(recs, "methods", "latex", "last")
    assert "div. (1/3)" in tex and "9.72" not in tex
    summary = {r["category"]: r for r in category_summary(runs_frame(recs), "last_top1")}
    assert summary["response"]["methods"] == ["dkd", "kd"] and summary["response"]["gain"]["n"] == 1  # dkd only


def test_ties_are_all_bold():
    recs = [_rec("kd", 0, 75.0), _rec("dkd", 0, 75.0), _rec("vanilla", 0, 60.0)]
    md = render_table(recs, "methods", "md", "last")
    assert _cell(md, "kd") == _cell(md, "dkd") == "75.00 (1)" and md.count("**75.00 (1)**") == 2


def test_a_grid_sweeping_T_prints_two_kd_rows(tmp_path, capsys):
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump({"name": "sweep", "output": str(tmp_path / "out"), "defaults": {
        "dataset": {"name": "digits", "batch_size": 32}, "epochs": 1, "max_steps_per_epoch": 2, "progress": "none"},
        "stages": {"teachers": {"runs": [{"key": "t", "student": "cifar_resnet8"}]},
                   "students": {"needs": "teachers", "axes": {
                       "method": ["kd"], "seed": [0], "method.hparams.T": [2, 4],
                       "pair": [{"teachers": ["t"], "student": "cifar_resnet8"}]}}}}, sort_keys=False))
    assert main(["grid", "launch", str(gfile)]) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("record.json")]
    kd = {r["config"]["method"]["hparams"]["T"]: r for r in recs if r["method"] == "kd"}
    assert kd[2.0]["variant"] == {"T": 2.0} and kd[2.0]["variant_label"] == "T=2" and kd[4.0]["variant"] == {}
    capsys.readouterr()
    assert main(["table", "--source", str(tmp_path / "out")]) == 0
    md = capsys.readouterr().out
    for T in (2, 4):
        assert _cell(md, f"kd (T={T})").strip("*") == f"{kd[float(T)]['metrics']['last_top1']:.2f} (1)"


def _cifar(method, seed, top1, best=None):
    return _rec(method, seed, top1, student="cifar_resnet8x4", teachers=("cifar_resnet32x4",), dataset="cifar100",
                best=best)


def test_repdistillers_fitnet_is_the_one_stage_recipe():
    rep = references.load("repdistiller")
    assert "fitnet" not in set(rep["method"]) and (rep["method"] == "fitnet_1stage").sum() == 13
    md = render_table([_cifar("fitnet_1stage", 0, 73.0), _cifar("fitnet", 0, 72.0)], "methods", "md", "last",
                      reference="repdistiller")
    line = next(l for l in md.splitlines() if l.startswith("| fitnet_1stage |"))
    published = rep[(rep["method"] == "fitnet_1stage") & (rep["student_arch"] == "cifar_resnet8x4")]["value"].item()
    assert f"[pub. {published:.2f}, Δ −{published - 73.0:.2f}]" in line
    assert "[pub." not in next(l for l in md.splitlines() if l.startswith("| fitnet |"))


def test_epoch_policy_of_each_reference_is_honoured():
    recs = [_cifar("kd", 0, 73.0, best=74.0), _cifar("kd", 1, 74.0, best=75.0)]
    # RepDistiller reports the last epoch: a best-epoch table gets its number but no difference
    md = render_table(recs, "methods", "md", "best", reference="repdistiller")
    assert "[pub. 73.33 (last epoch), no Δ]" in md and "not comparable" in md
    csv = pd.read_csv(pd.io.common.StringIO(render_table(recs, "methods", "csv", "best", reference="repdistiller")))
    row = csv[csv["method"] == "kd"].iloc[0]
    assert row["published"] == 73.33 and pd.isna(row["delta"]) and row["published_epoch"] == "last"
    assert "[pub. 73.33, Δ +0.17]" in render_table(recs, "methods", "md", "last", reference="repdistiller")
    # DIST does not say which epoch: the difference is given and marked
    dist = [_cifar("dist", 0, 76.0)]
    assert "[pub. 76.31 (epoch unstated), Δ −0.31]" in render_table(dist, "methods", "md", "last", reference="dist")
    tex = render_table(recs, "methods", "latex", "best", reference="repdistiller")
    assert r"{\scriptsize [pub.~73.33 (last epoch), no $\Delta$]}" in tex
    tex_last = render_table(recs, "methods", "latex", "last", reference="repdistiller")
    assert r"{\scriptsize [pub.~73.33, $\Delta$\,$+$0.17]}" in tex_last
    # mdistiller reports the best epoch chosen on test: beside best-test it is comparable (plain Δ),
    # beside best (chosen on validation) it is given with its Δ but marked, and beside last refused
    ref = references.load("dkd")
    pub = ref[(ref["method"] == "kd") & (ref["student_arch"] == "cifar_resnet8x4")]["value"].item()
    best_test = statistics.mean([74.5, 75.5])
    d = best_test - pub
    md_bt = render_table(recs, "methods", "md", "best-test", reference="dkd")
    assert f"[pub. {pub:.2f}, Δ {'+' if d >= 0 else '−'}{abs(d):.2f}]" in md_bt
    assert "best test top-1 over epochs (literature convention: selected on test)" in md_bt
    md_b = render_table(recs, "methods", "md", "best", reference="dkd")
    d = 74.5 - pub
    assert f"[pub. {pub:.2f} (sel. on test), Δ {'+' if d >= 0 else '−'}{abs(d):.2f}]" in md_b
    assert "test top-1 at the epoch of best validation accuracy" in md_b and "optimistic" in md_b
    assert "(best epoch), no Δ]" in render_table(recs, "methods", "md", "last", reference="dkd")


def test_reference_only_where_it_applies_and_the_readme_layout_name(tmp_path, capsys):
    _write_records(tmp_path / "src", SYNTH)
    for layout in ("categories", "runs"):
        capsys.readouterr()
        assert main(["table", "--source", str(tmp_path / "src"), "--layout", layout, "--format", "csv",
                     "--reference", "repdistiller"]) == 2
        assert f"--layout {layout} has no per-method cells" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["table", "--source", str(tmp_path / "src"), "--layout", "repdistiller"]) == 0
    alias = capsys.readouterr().out
    assert main(["table", "--source", str(tmp_path / "src"), "--layout", "methods"]) == 0
    assert alias == capsys.readouterr().out and alias.startswith("| Method |")


def test_figures_share_one_palette_and_embed_truetype_fonts(tmp_path):
    from kdsuite.analysis.plots import _colours, category_colours

    every = category_colours()
    # a category's colour does not depend on which other categories a figure shows
    assert _colours(["online"])["online"] == _colours(["response", "online"])["online"] == every["online"]
    assert len(set(every.values())) == len(every)
    _write_records(tmp_path / "src", [dict(r, history=[{"epoch": e, "stage": "main", "val/student/top1": 10.0 * e}
                                                      for e in (1, 2)]) for r in SYNTH])
    assert main(["plot", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "fig"), "--formats", "pdf"]) == 0
    for pdf in (tmp_path / "fig").glob("*.pdf"):
        raw = pdf.read_bytes()
        # TrueType outlines: simple (/TrueType) or, for glyphs beyond Latin-1 such as →, CID-keyed (/CIDFontType2)
        assert b"/Type3" not in raw and (b"/TrueType" in raw or b"/CIDFontType2" in raw), pdf.name


def test_figures_use_the_papers_names_of_methods(monkeypatch, tmp_path):
    import matplotlib.axes

    from kdsuite.analysis.plots import plot_gain

    seen = []
    real = matplotlib.axes.Axes.set_xticks

    def spy(self, ticks, labels=None, **kw):
        seen.append(list(labels or []))
        return real(self, ticks, labels, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_xticks", spy)
    plot_gain(runs_frame(SYNTH), tmp_path, "last_top1", ["png"])
    assert seen == [["DKD", "KD", "FitNet (1-stage)", "DML"]]


def test_records_without_a_variant_field_get_it_from_their_config():
    old = [{k: v for k, v in _kd(s, top1, T).items() if k not in ("variant", "variant_label")}
           for s, top1, T in ((0, 80.0, 2), (0, 96.0, 4))]
    md = render_table(old + [_rec("vanilla", 0, 60.0)], "methods", "md", "last")
    assert _cell(md, "kd (T=2)") == "80.00 (1)" and _cell(md, "kd (T=4)") == "96.00 (1)"
