"""NAS-based distillation (survey §5.9): the proxies' scores against formulas computed independently, a
search grid whose last stage trains the architecture its candidates' records rank first, and the
search's failure modes (candidates missing, stale, diverged)."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from kdsuite.core.errors import ConfigError
from kdsuite.core.records import read_record
from kdsuite.experiments.config import config_hash
from kdsuite.experiments.grid import expand
from kdsuite.methods.components.search import SCORE, rdm, rdm_similarity
from kdsuite.slurm.executors import run_in_process
from kdsuite.testing import build_parts


def _np_rdm(a):
    return 1.0 - np.corrcoef(a.reshape(len(a), -1))


def test_rdm_and_its_similarity_match_numpy_and_scipy_in_float64():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(12, 3, 4, 4, generator=g), torch.randn(12, 7, generator=g)
    ra, rb = rdm(a), rdm(b)
    assert np.allclose(ra.numpy(), _np_rdm(a.double().numpy()), atol=1e-12)
    iu = np.triu_indices(12, 1)
    x, y = _np_rdm(a.double().numpy())[iu], _np_rdm(b.double().numpy())[iu]
    assert rdm_similarity(ra, rb) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert rdm_similarity(ra, rb, rank=True) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert rdm_similarity(ra, ra) == pytest.approx(1.0)
    # invariant to a per-image affine change of the activations (correlation distance)
    assert torch.allclose(rdm(a * 3.0 + 1.5), ra, atol=1e-12)


def _trained(name, digits_teachers, tmp_path):
    parts = build_parts(name, digits_teachers, tmp_path, epochs=2, steps=6)
    assert parts.trainer.fit().status == "finished"
    return parts


def test_nas_kd_scores_a_candidate_by_its_validation_accuracy(digits_teachers, tmp_path):
    parts = _trained("nas_kd", digits_teachers, tmp_path)
    out = parts.method.record_metrics(parts)
    student = parts.student.eval()
    hits = n = 0
    with torch.no_grad():
        for batch in parts.data.holdout:
            hits += int((student(batch[0]).argmax(1) == batch[1]).sum())
            n += len(batch[1])
    assert n == out["search_images"] == parts.data.split["val"]  # the validation split, not test
    assert out[SCORE] == pytest.approx(100.0 * hits / n)


def test_tgas_scores_a_candidate_by_the_rdm_similarity_of_its_stages_to_the_teachers(digits_teachers, tmp_path):
    from kdsuite.zoo import taps

    parts = _trained("tgas", digits_teachers, tmp_path)
    m = parts.method
    out = m.record_metrics(parts)
    x = torch.cat([b[0] for b in parts.data.holdout])[:m.hp.images]
    m.eval()
    with torch.no_grad():
        _, sf = taps.extract(m.student, x, m.s_taps)
        _, tf = taps.extract(m.teachers[0], x, m.t_taps[0])
    iu = np.triu_indices(len(x), 1)
    sims = [stats.pearsonr(_np_rdm(sf[ks].double().numpy())[iu], _np_rdm(tf[kt].double().numpy())[iu])[0]
            for ks, kt in zip(m.s_taps, m.t_taps[0])]
    assert len(sims) == 3 and out["search_stage_similarity"] == pytest.approx(sims, abs=1e-9)
    assert out[SCORE] == pytest.approx(float(np.mean(sims)), abs=1e-9)
    # the teacher never trains in the proxy: its stages stay what they were, so the score compares with it
    assert all(p.grad is None for p in m.teachers[0].parameters())


def _grid(root, teacher, candidates=("cifar_resnet8", "cifar_wrn_16_1"), proxy="tgas", seeds=(0, 1)):
    return expand({
        "name": "nas", "output": str(root),
        "defaults": {"dataset": {"name": "digits", "batch_size": 32}, "epochs": 1, "max_steps_per_epoch": 4,
                     "progress": "none", "optim": {"lr": 0.05}},
        "teachers": {"t": {"checkpoint": teacher}},
        "stages": {
            "search": {"axes": {"method": [proxy], "seed": list(seeds),
                                "pair": [{"teachers": ["t"], "student": a} for a in candidates]}},
            "final": {"needs": "search", "axes": {"method": ["kd"], "seed": [0],
                                                  "pair": [{"teachers": ["t"], "student": {"search": "search"}}]}}}})


def test_the_final_stage_trains_the_architecture_with_the_best_mean_proxy_score(digits_teachers, tmp_path):
    g = _grid(tmp_path / "runs", digits_teachers[0])
    (final,) = g.stages["final"]
    cand = g.stages["search"]
    assert final.cfg["student"]["arch"] is None and final.run_dir.name.startswith("kd-searched-s0-")
    assert sorted(final.needs) == sorted(r.hash for r in cand)  # waits for every candidate (Slurm afterok)
    assert run_in_process(g)["failed"] == 0
    scores = {}
    for r in cand:
        rec = read_record(r.run_dir)
        scores.setdefault(rec["student"], []).append(rec["metrics"][SCORE])
    best = max(scores, key=lambda a: np.mean(scores[a]))
    rec = read_record(final.run_dir)
    assert rec["student"] == best == rec["search"]["chosen"] == rec["config"]["student"]["search"]["chosen"]
    assert [r["arch"] for r in rec["search"]["ranking"]] == sorted(scores, key=lambda a: -np.mean(scores[a]))
    assert {r["arch"]: r["seeds"] for r in rec["search"]["ranking"]} == {a: 2 for a in scores}
    assert rec["config_hash"] == final.hash == config_hash(rec["config"])  # the plan's hash is the run's
    assert rec["variant"] == {"student": "searched by tgas"}
    # the trained student is the chosen architecture: its parameter count says so
    assert rec["metrics"]["student_params"] == [r["params"] for r in rec["search"]["ranking"] if r["arch"] == best][0]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "kdsuite", *args], capture_output=True, text=True, cwd=cwd)


def test_search_table_lists_every_candidate_and_marks_the_choice(digits_teachers, tmp_path):
    g = _grid(tmp_path / "runs", digits_teachers[0], seeds=(0,))
    run_in_process(g)
    rec = read_record(g.stages["final"][0].run_dir)
    from kdsuite.analysis.cli_table import render_table
    from kdsuite.core.records import load_records

    md = render_table(load_records(tmp_path / "runs"), "search", "md", "last")
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "Candidate" not in ln]
    assert len(rows) == 2 and rows[0].endswith("| ✓ |") and not rows[1].endswith("| ✓ |")
    chosen = {"cifar_resnet8": "ResNet8", "cifar_wrn_16_1": "WRN-16-1"}[rec["search"]["chosen"]]
    assert rows[0].startswith(f"| {chosen} |")
    assert f"Chosen {chosen} trained by KD" in md
    tex = render_table(load_records(tmp_path / "runs"), "search", "latex", "last")
    assert r"\label{tab:kdsuite-search}" in tex and tex.count(r"$\surd$") == 1
    if shutil.which("pdflatex"):
        from tests.test_latex_compile import _compile

        log = _compile(tmp_path, "search", "", tex)
        assert "Overfull \\hbox" not in log and "Missing character" not in log
    csv = render_table(load_records(tmp_path / "runs"), "search", "csv", "last")
    assert csv.splitlines()[0].startswith("stage,proxy,candidate,params,mean_score")
    # the methods and categories tables hold the chosen student's runs as the NAS-based cell, not the proxies
    methods = render_table(load_records(tmp_path / "runs"), "methods", "md", "last")
    assert "| kd (student searched by tgas) | NAS-based distillation |" in methods
    assert "tgas |" not in methods and "1 architecture-search candidate" not in methods
    assert "Not in this table: 2 architecture-search candidate run(s)" in methods
    cats = render_table(load_records(tmp_path / "runs"), "categories", "md", "last")
    assert "| NAS-based distillation | algorithm (§5.9) | offline | kd | 1 |" in cats
    # figures: the searched student's KD is its own bar and curve, apart from any hand-picked KD
    from kdsuite.analysis import plots, tables

    kept, _notes = tables.other_protocols(load_records(tmp_path / "runs"), "these figures")
    assert set(plots.curve_data(kept)["method"]) == {"KD (searched student)"}
    assert list(plots.gain_data(tables.runs_frame(kept + [dict(r, method="vanilla", category="baseline", search=None,
                                                                run_id="v" + r["run_id"], config_hash=None)
                                                           for r in kept]), "last_top1")["label"]) == ["KD (searched student)"]
    no_search = tmp_path / "plain"
    shutil.copytree(g.stages["search"][0].run_dir, no_search / "x")
    proc = _cli("table", "--source", str(no_search), "--layout", "search")
    assert proc.returncode == 2 and "no finished run of these records has a searched student" in proc.stderr


def test_a_search_with_an_unfinished_stale_or_diverged_candidate(digits_teachers, tmp_path):
    from kdsuite.experiments.run import run

    g = _grid(tmp_path / "runs", digits_teachers[0], seeds=(0,))
    (final,) = g.stages["final"]
    a, b = g.stages["search"]
    with pytest.raises(ConfigError) as e:  # nothing trained yet: both candidates named, nothing written
        run(final.cfg)
    assert str(a.run_dir) in str(e.value) and str(b.run_dir) in str(e.value) and "no record yet" in str(e.value)
    assert read_record(final.run_dir) is None
    run(a.cfg)
    run(b.cfg)
    rec_b = json.loads((b.run_dir / "record.json").read_text())
    # b diverged: the search keeps it out of the choice and says so
    (b.run_dir / "record.json").write_text(json.dumps(dict(rec_b, status="diverged")))
    rec = run(final.cfg)
    assert rec["search"]["chosen"] == a.cfg["student"]["arch"]
    assert rec["search"]["ranking"][-1] == dict(rec["search"]["ranking"][-1], arch=b.cfg["student"]["arch"],
                                               mean_score=None, diverged=1)
    # a candidate folder holding another run than planned is refused by name
    (b.run_dir / "record.json").write_text(json.dumps(dict(rec_b, config_hash="0" * 64)))
    again = dict(final.cfg, seed=1)
    with pytest.raises(ConfigError, match="not the planned candidate"):
        run(again)


def test_bad_search_references_are_grid_errors(digits_teachers, tmp_path):
    spec = {"name": "bad", "output": str(tmp_path), "teachers": {"t": {"checkpoint": digits_teachers[0]}},
            "defaults": {"dataset": {"name": "digits"}},
            "stages": {"final": {"axes": {"method": ["kd"], "pair": [{"teachers": ["t"], "student": {"search": "nas"}}]}}}}
    with pytest.raises(ConfigError, match=r"no earlier stage 'nas' with candidate runs"):
        expand(spec)
    spec["stages"]["final"]["axes"]["pair"] = [{"teachers": ["t"], "student": {"serch": "nas"}}]
    with pytest.raises(ConfigError, match=r"expected a model name or \{search: STAGE\}"):
        expand(spec)
    from kdsuite.experiments.config import validate

    with pytest.raises(ConfigError, match="student.search"):
        validate({"student": {"search": {"candidates": []}}})
