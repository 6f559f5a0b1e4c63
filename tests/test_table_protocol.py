"""Recipes are named, never hidden: a run record's protocol facts, the marks a table prints beside a cell whose
protocol differs from its column's standard recipe, the categories summary that never ranks such a cell against
standard ones, and ``--reference leaders`` beside MLKD, MLKD+LS and KD+LS cells."""
import json
import shutil
import subprocess

import pytest

from kdsuite.analysis import references
from kdsuite.analysis.cli_table import render_table
from kdsuite.analysis.table_protocol import marks
from kdsuite.analysis.tables import category_summary, comparison, runs_frame
from tests.test_tables import _rec

R8 = dict(student="cifar_resnet8x4", teachers=("cifar_resnet32x4",), dataset="cifar100")
COL = "resnet32x4→resnet8x4"


def _with(rec, epochs=240, views=None, hparams=None, parts=None):
    rec = dict(rec, config={"epochs": epochs, "dataset": {"aug_views": views}, "method": {"hparams": hparams or {}}})
    if parts:
        rec["inference_parts"] = parts
    return rec


def _records():
    van = [_with(_rec("vanilla", s, v, student="cifar_resnet8x4", dataset="cifar100")) for s, v in enumerate([72.0, 73.0])]
    kd = [_with(_rec("kd", s, v, **R8)) for s, v in enumerate([74.0, 75.0])]
    kd_ls = [_with(_rec("kd", s, v, **R8), hparams={"standardize": True, "T": 2.0}) for s, v in enumerate([76.0, 76.5])]
    mlkd = [_with(_rec("mlkd", s, v, **R8), views=["weak", "strong"]) for s, v in enumerate([77.0, 77.4])]
    mlkd_ls = [_with(_rec("mlkd", s, v, **R8), epochs=480, views=["weak", "strong"], hparams={"standardize": True})
               for s, v in enumerate([78.0, 78.4])]
    simkd = [_with(_rec("simkd", 0, 78.0, **R8), parts={"student": {"source": "student", "params": 10},
                                                         "teacher0.fc": {"source": "teacher 0", "params": 5}})]
    return van + kd + kd_ls + mlkd + mlkd_ls + simkd


def test_marks_name_each_difference_and_nothing_else():
    std = {"epochs": 240, "aug_views": ["weak"], "teacher_parts": []}
    assert marks(std, 240) == ""
    assert marks(dict(std, aug_views=["weak", "strong"]), 240) == "2 views, strong aug"
    assert marks(dict(std, aug_views=["autoaugment"]), 240) == "AutoAugment"
    assert marks(dict(std, teacher_parts=["teacher0.fc"]), 240) == "teacher head"
    assert marks(dict(std, teacher_parts=["teacher0.layer3"]), 240) == "teacher parts"
    assert marks(dict(std, epochs=480, aug_views=["weak", "strong"]), 240) == "2 views, strong aug, 480 ep"


def test_the_methods_table_marks_every_non_standard_cell_and_the_references_match_each_variant():
    recs = _records()
    t = comparison(runs_frame(recs), "last_top1")
    by_method = {t["row_methods"][label]: label for label, _c, _cells in t["rows"] if label in t["row_methods"]}
    mk = t["marks"]
    assert mk[(by_method["simkd"], COL)] == "teacher head"
    mlkd_rows = [label for label in t["row_methods"] if t["row_methods"][label] == "mlkd"]
    assert sorted(mk[(r, COL)] for r in mlkd_rows) == ["2 views, strong aug", "2 views, strong aug, 480 ep"]
    assert all((r, COL) not in mk for r in t["row_methods"] if t["row_methods"][r] in ("kd", "vanilla"))
    t = references.attach(t, "leaders", "cifar100")
    pub = {t["ref_methods"].get(label, t["row_methods"][label]): r["value"] for (label, _c), r in t["refs"].items()}
    assert len(pub) == len(t["refs"])  # one published number per row
    assert pub == {"kd+ls": 76.62, "mlkd": 77.08, "mlkd+ls": 78.28, "simkd": 78.08}
    md = render_table(recs, "methods", "md", "last", reference="leaders")
    assert "77.20 ± 0.28 (2) ⟨2 views, strong aug⟩ [pub. 77.08 (epoch unstated), Δ +0.12]" in md
    assert "⟨2 views, strong aug, 480 ep⟩ [pub. 78.28" in md and "| 78.00 (1) ⟨teacher head⟩ [pub. 78.08" in md
    assert "⟨…⟩: the cell's protocol differs" in md


def test_the_categories_summary_ranks_only_standard_recipe_cells():
    recs = _records()
    rows = {r["category"]: r for r in category_summary(runs_frame(recs), "last_top1")}
    resp = rows["response"]
    # mlkd gains most (+5.7 and +4.7 over vanilla 72.5) but trains on two views: kd (its two variants) ranks
    assert resp["best"][0] == "kd" and resp["best"][1] == pytest.approx((76.25 + 74.5) / 2 - 72.5)
    assert resp["gain"]["n"] == 2
    assert {(m, k) for m, k, _g in resp["other_protocol"]} == {("mlkd", "2 views, strong aug"),
                                                                ("mlkd", "2 views, strong aug, 480 ep")}
    assert "mlkd [2 views, strong aug]" in resp["methods"] and "mlkd" not in resp["methods"]
    md = render_table(recs, "categories", "md", "last")
    assert "not ranked, other protocol: mlkd [2 views, strong aug] (+4.70)" in md
    assert "simkd [teacher head] | 1 | – | –; not ranked, other protocol: simkd [teacher head] (+5.50)" in md


def test_a_run_record_carries_its_protocol_facts(tmp_path):
    from kdsuite.experiments.run import run
    from kdsuite.kit.fixtures import digits_teachers

    teacher = digits_teachers(archs=("cifar_resnet8",))[0]
    rec = run({"student": "cifar_resnet8", "epochs": 1, "max_steps_per_epoch": 2, "progress": "none",
               "teachers": [{"checkpoint": teacher}], "method": "mlkd", "output": {"root": str(tmp_path)},
               "dataset": {"name": "digits", "batch_size": 16, "aug_views": ["weak", "strong"]}})
    on_disk = json.loads((tmp_path / rec["run_dir"].split("/")[-1] / "record.json").read_text())
    assert on_disk["protocol"] == {"epochs": 1, "aug_views": ["weak", "strong"], "views_per_step": 2,
                                   "forwards_per_step": {"student": 2, "teachers": 2}, "teacher_parts": []}
    assert runs_frame([on_disk])["marks"].iloc[0] == "2 views, strong aug"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_the_marked_latex_table_compiles(tmp_path):
    tex = render_table(_records(), "methods", "latex", "last", reference="leaders")
    assert r"$\langle$2 views, strong aug$\rangle$" in tex
    doc = tmp_path / "t.tex"
    doc.write_text("\\documentclass{article}\\usepackage[T1]{fontenc}\\usepackage{booktabs,graphicx}"
                   "\\begin{document}" + tex + "\\end{document}")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:]


def test_the_gain_figure_keeps_the_tables_rows_and_marks_other_protocols():
    """The figure shows what the table shows: one bar per table row (kd and KD+LS apart, not merged into one
    'KD' bar), and a cell trained under another protocol is labelled with its marks and hatched."""
    from kdsuite.analysis.plots import gain_data
    from kdsuite.analysis.tables import runs_frame

    data = gain_data(runs_frame(_records()), "last_top1")
    kd = data[data["method"] == "kd"]
    assert sorted(kd["label"]) == ["KD (T=2, standardize=true)", "KD (T=default, standardize=default)"], kd
    assert sorted(kd["gain"].round(2)) == [2.0, 3.75]  # 74.5 and 76.25 against vanilla's 72.5
    mlkd = dict(zip(data[data["method"] == "mlkd"]["label"], data[data["method"] == "mlkd"]["marks"]))
    assert set(mlkd.values()) == {"2 views, strong aug", "2 views, strong aug, 480 ep"}, mlkd
    assert all(label.endswith(f"[{mk}]") for label, mk in mlkd.items()), mlkd
    assert data[data["method"] == "kd"]["marks"].tolist() == ["", ""]
