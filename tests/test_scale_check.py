"""The scale check at a run's first step: each distillation term's ratio to CE goes into the record, a
term outside its method's band warns on one stderr line naming it, and the check changes nothing else.

Tiny runs: cifar_resnet8 students of the kit's 4-epoch digits teachers, 1–2 epochs of 3 steps."""
import json

import pytest
import torch

from kdsuite.core.records import load_record
from kdsuite.engine import scale_check
from kdsuite.engine.trainer import derive_seed, seed_everything
from kdsuite.experiments.run import build, prepare, run
from kdsuite.methods.registry import get_method
from kdsuite.methods.scale import DEFAULT_BAND, UNTRAINED_PARTNER_BAND, ScaleBand, band_of, checked_terms


def _cfg(root, teachers, method="at", epochs=1, **hparams):
    return {"student": "cifar_resnet8", "teachers": [{"checkpoint": teachers[0]}], "epochs": epochs,
            "max_steps_per_epoch": 3, "progress": "none", "eval_every": 100,
            "dataset": {"name": "digits", "batch_size": 32}, "optim": {"lr": 0.05},
            "method": {"name": method, "hparams": hparams}, "output": {"root": str(root)}}


def _step0_losses(cfg):
    """The first step's losses, computed here as ``fit`` would reach them: the stage entered, the epoch
    seeded as the trainer seeds epoch 0, its first batch, the plugin's forward (no update)."""
    cfg, h, rd = prepare(cfg)
    parts = build(cfg, h, rd)
    tr, m = parts.trainer, parts.method
    tr.enter_stage(0)
    s = derive_seed(cfg["seed"], 0, 0)
    seed_everything(s)
    tr.train_loader.set_epoch_seed(s)
    x, y = next(iter(tr.train_loader))[:2]
    m.train()
    with torch.no_grad():
        return {k: float(v) for k, v in m.forward_train(x, y).items()}


def _scale_lines(err):
    return [line for line in err.splitlines() if "scale check" in line]


def test_recorded_ratio_is_the_ratio_of_the_step0_losses(digits_teachers, tmp_path):
    rec = run(_cfg(tmp_path / "run", digits_teachers))
    losses = _step0_losses(_cfg(tmp_path / "ref", digits_teachers))
    entry = rec["scale"]["at"]
    assert set(rec["scale"]) == {"at"}  # CE is the denominator, not a term of its own
    assert entry["ratio"] == pytest.approx(losses["at"] / losses["ce"], rel=1e-5)
    band = get_method("at").scale_band["at"]
    assert entry["band"] == [band.lo, band.hi] and entry["inside"] == band.holds(entry["ratio"])
    on_disk = json.loads((tmp_path / "run" / rec["run_dir"].split("/")[-1] / "record.json").read_text())
    assert on_disk["scale"] == rec["scale"]


def test_a_term_far_outside_its_band_warns_once_naming_it(digits_teachers, tmp_path, capfd):
    inside = run(_cfg(tmp_path, digits_teachers, beta=250.0))  # the digits' β (16×16 maps)
    assert inside["scale"]["at"]["inside"] is True
    assert _scale_lines(capfd.readouterr().err) == []
    rec = run(_cfg(tmp_path, digits_teachers, beta=100000.0))  # ×100 the reference β
    e = rec["scale"]["at"]
    assert e["inside"] is False and e["ratio"] > e["band"][1]
    lines = _scale_lines(capfd.readouterr().err)
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith(f"[{rec['run_dir'].split('/')[-1]}]")
    assert f"at/CE = {e['ratio']:.3g}" in line
    assert f"({e['band'][0]:.3g}, {e['band'][1]:.3g})" in line
    assert "method.hparams.beta = 100000.0" in line


def test_kd_with_a_huge_weight_warns_and_its_default_does_not(digits_teachers, tmp_path, capfd):
    run(_cfg(tmp_path, digits_teachers, method="kd"))
    assert _scale_lines(capfd.readouterr().err) == []
    rec = run(_cfg(tmp_path, digits_teachers, method="kd", kd_weight=1e5))
    assert rec["scale"]["kd"]["inside"] is False
    (line,) = _scale_lines(capfd.readouterr().err)
    assert "kd/CE" in line and "method.hparams.kd_weight = 100000.0" in line


def _weights(root, rec):
    ck = torch.load(root / rec["run_dir"].split("/")[-1] / "checkpoint.pt", weights_only=True)
    return ck["method"], ck["optimizers"]


def test_the_check_changes_no_weight_nor_metric_and_survives_a_resume(digits_teachers, tmp_path, monkeypatch):
    with_check = run(_cfg(tmp_path / "a", digits_teachers, epochs=2))
    resumed_cfg = _cfg(tmp_path / "c", digits_teachers, epochs=2)
    assert run(resumed_cfg, stop_after_epochs=1)["status"] == "interrupted"
    resumed = run(resumed_cfg)  # the check ran in the first attempt; its result comes from the checkpoint
    monkeypatch.setattr(scale_check, "step0_scale", lambda *a, **k: {})
    without = run(_cfg(tmp_path / "b", digits_teachers, epochs=2))
    assert with_check["scale"] and without["scale"] == {}
    assert resumed["scale"] == with_check["scale"]
    wa, oa = _weights(tmp_path / "a", with_check)
    wb, ob = _weights(tmp_path / "b", without)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = oa["student"]["state"], ob["student"]["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert with_check["metrics"]["last_top1"] == without["metrics"]["last_top1"]
    assert [h["train/loss"] for h in with_check["history"]] == [h["train/loss"] for h in without["history"]]


# ---- the rules, on hand-made losses -------------------------------------------------------------------
class _Offline:
    name, scheme, label_terms, hp = "fake", "offline", None, None
    scale_band = {"kd": ScaleBand.around(6.0, "kd_weight"), "main/hint": ScaleBand(1.0, 2.0)}
    scale_exempt = ("d_real",)


class _Online(_Offline):
    scheme = "online"
    scale_band: dict = {}


def _t(**kw):
    return {k: torch.tensor(v) for k, v in kw.items()}


def test_which_terms_are_compared_and_with_which_band():
    keys = ["ce", "kd", "ce_exits", "ce0", "bce", "d_real", "adv"]
    assert checked_terms(_Offline, keys) == ["kd", "adv"]
    assert band_of(_Offline, "kd") == ScaleBand(0.6, 60.0, "kd_weight", 6.0)
    assert band_of(_Offline, "main/kd") == band_of(_Offline, "kd")  # a stage's term: the term's band
    assert band_of(_Offline, "main/hint")[:2] == (1.0, 2.0) and band_of(_Offline, "init/hint")[:2] == DEFAULT_BAND
    assert band_of(_Online, "kl")[:2] == UNTRAINED_PARTNER_BAND


def test_step0_scale_skips_what_has_no_ce_and_judges_no_zero_term():
    m = _Offline()
    assert scale_check.step0_scale(m, _t(kd=1.0, d_real=2.0), "main", 1) == {}  # no CE (data-free, DML)
    assert scale_check.step0_scale(m, _t(ce=0.0, kd=1.0), "main", 1) == {}  # CE weighted by 0
    out = scale_check.step0_scale(m, _t(ce=2.0, kd=24.0, adv=0.0, d_real=5.0), "main", 1)
    assert out == {"kd": {"ratio": 12.0, "band": [0.6, 60.0], "inside": True},
                   "adv": {"ratio": 0.0, "band": list(DEFAULT_BAND), "inside": None}}
    assert scale_check.warning("r", m, out) is None
    out = scale_check.step0_scale(m, _t(ce=1.0, hint=3.0, kd=float("nan")), "main", 2)
    assert out == {"main/hint": {"ratio": 3.0, "band": [1.0, 2.0], "inside": False}}  # non-finite: left out
    line = scale_check.warning("r", m, out)
    assert line.startswith("[r] scale check at step 0: main/hint/CE = 3 is outside fake's calibrated band (1, 2)")


def test_an_older_record_without_scale_reads(tmp_path):
    p = tmp_path / "record.json"
    p.write_text(json.dumps({"schema": 2, "status": "finished", "method": "kd"}))
    assert load_record(p).scale == {}
