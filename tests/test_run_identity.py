"""Run identity and the record schema: what a record says the run was (variant, data, code, status), the
config hash covering the data's content, stale runs after a plugin change, unreadable records listed by
path."""
import copy
import hashlib
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from kdsuite.core.records import RecordError, RunRecord, load_record, read_record, scan_records, write_record
from kdsuite.cli import main
from kdsuite.experiments.config import NON_IDENTITY, config_hash, validate
from kdsuite.experiments.grid import load_grid
from kdsuite.experiments.identity import data_identity
from kdsuite.methods.identity import code_identity, method_variant, variant_label
from kdsuite.methods.registry import get_method

TINY = {"epochs": 1, "max_steps_per_epoch": 2, "progress": "none", "dataset": {"name": "digits", "batch_size": 32}}


def _old_hash(cfg):
    """The config hash as kdsuite computed it before data fingerprints (written out again here)."""
    ident = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in NON_IDENTITY and not (k == "sync_bn" and v is False)}
    # dataset.views and dataset.aug_views did not exist then: a config at their default (null) is a config of that time
    ident["dataset"] = {k: v for k, v in ident["dataset"].items()
                        if k not in ("root", "download") and not (k in ("views", "aug_views") and v is None)}
    ident["teachers"] = [{"arch": t.get("arch"), "id": t.get("config_hash") or t.get("sha256")} for t in ident["teachers"]]
    # nor did method.pairs
    ident["method"] = {k: v for k, v in ident["method"].items() if not (k == "pairs" and v is None)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def test_hashes_of_runs_without_a_data_folder_are_unchanged():
    for raw in ({}, {"epochs": 3, "method": {"name": "cskd", "hparams": {"T": 3}}},
                {"dataset": {"name": "cifar100", "root": "somewhere"}}, {"dataset": {"name": "cifar10", "root": "x"}}):
        cfg = validate(raw)
        assert config_hash(cfg) == _old_hash(cfg), raw


def _image_folder(root, colour):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            d = Path(root) / split / c
            d.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (colour, 10 * i, 0)).save(d / f"{i}.png")


def test_the_hash_follows_the_image_folders_content_not_its_path(tmp_path):
    _image_folder(tmp_path / "one", 0)
    _image_folder(tmp_path / "other", 200)  # same file names, other pixels → other sizes
    (tmp_path / "other" / "train" / "a" / "extra.png").write_bytes(b"x" * 10)
    import shutil

    shutil.copytree(tmp_path / "one", tmp_path / "copy")
    h = {name: config_hash(validate({"dataset": {"name": "imagefolder", "root": str(tmp_path / name)}}))
         for name in ("one", "other", "copy", "missing")}
    assert h["one"] != h["other"] and h["one"] == h["copy"] and h["missing"] not in (h["one"], h["other"])
    listing = sorted(f"{p.relative_to(tmp_path / 'one')}\t{p.stat().st_size}"
                     for p in (tmp_path / "one").rglob("*") if p.is_file())
    expect = hashlib.sha256("".join(line + "\n" for line in listing).encode()).hexdigest()
    assert data_identity({"name": "imagefolder", "root": str(tmp_path / "one")})["fingerprint"] == "sha256:" + expect
    assert data_identity({"name": "imagefolder", "root": str(tmp_path / "missing")})["fingerprint"] == "unavailable"


def test_cifar_without_checksums_is_identified_by_its_files(tmp_path):
    from tests.test_data import _write_cifar

    _write_cifar(tmp_path / "a", "cifar10")
    _write_cifar(tmp_path / "b", "cifar10", n_train=21)
    ha, hb = (config_hash(validate({"dataset": {"name": "cifar10", "root": str(tmp_path / d), "verify_checksums": False}}))
              for d in "ab")
    assert ha != hb


def test_variant_and_code_identity():
    kd = get_method("kd")
    assert method_variant(kd, {"T": 2.0, "alpha": 0.1, "standardize": False}) == {"T": 2.0}
    assert variant_label({"T": 2.0, "alpha": 0.25}) == "T=2, alpha=0.25" and variant_label({}) == ""
    ident = code_identity(kd)
    with open(inspect.getsourcefile(kd), "rb") as fh:
        assert ident["file_sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert ident["file"] == "kd.py" and ident["package"] and ident["version"]


def test_record_schema_round_trip_and_statuses(tmp_path):
    rec = RunRecord(status="finished", method="kd", variant={"T": 2.0}, variant_label="T=2",
                    data={"name": "digits", "fingerprint": "sha256:x"}, code={"file_sha256": "ab"}, extra_field=1)
    write_record(tmp_path, rec)
    back = read_record(tmp_path)
    assert back["variant_label"] == "T=2" and back["data"]["fingerprint"] == "sha256:x" and back["extra_field"] == 1
    assert load_record(tmp_path / "record.json").status == "finished"
    for bad in ("done", None):
        with pytest.raises(Exception):
            RunRecord(status=bad)
    assert RunRecord(status="stopped").status == "interrupted"  # schema 1 wrote the trainer's word


def test_a_truncated_record_is_named_by_path_everywhere(tmp_path, capsys):
    good = {"status": "finished", "method": "vanilla", "category": "baseline", "scheme": "offline", "dataset": "digits",
            "student": "cifar_resnet8", "pair": "resnet8", "seed": 0, "metrics": {"last_top1": 50.0}}
    for i in range(3):
        write_record(tmp_path / "src" / f"r{i}", dict(good, seed=i, config_hash=str(i)))
    bad = tmp_path / "src" / "r2" / "record.json"
    bad.write_text(bad.read_text()[:40])
    with pytest.raises(RecordError, match=str(bad)):
        read_record(bad.parent)
    recs, unreadable = scan_records(tmp_path / "src")
    assert len(recs) == 2 and [e.path for e in unreadable] == [bad]
    capsys.readouterr()
    assert main(["table", "--source", str(tmp_path / "src")]) == 0
    out, err = capsys.readouterr()
    assert str(bad) in err and str(bad) in out and "(2)" in out

    # grid plan / status list it, launch refuses before anything runs
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump({"name": "trunc", "output": str(tmp_path / "grid"), "defaults": TINY,
                                     "stages": {"only": {"runs": [{"seed": 0}, {"seed": 1}]}}}))
    r0, r1 = load_grid(str(gfile)).stages["only"]
    r0.run_dir.mkdir(parents=True)
    (r0.run_dir / "record.json").write_text('{"status": "finis')
    for cmd in ("plan", "status"):
        capsys.readouterr()
        assert main(["grid", cmd, str(gfile)]) == 0
        out = capsys.readouterr().out
        assert str(r0.run_dir / "record.json") in out and "unreadable" in out, cmd
    assert main(["grid", "launch", str(gfile)]) == 2
    assert str(r0.run_dir / "record.json") in capsys.readouterr().err
    assert not r1.run_dir.exists()


def test_a_changed_plugin_makes_its_runs_stale_and_rerun_stale_reruns_them(tmp_path, capsys):
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump({"name": "stale", "output": str(tmp_path / "grid"), "defaults": TINY,
                                     "stages": {"only": {"runs": [{"seed": 0}]}}}))
    assert main(["grid", "launch", str(gfile)]) == 0
    (r,) = load_grid(str(gfile)).stages["only"]
    rec = read_record(r.run_dir)
    assert rec["code"]["file_sha256"] == code_identity(get_method("vanilla"))["file_sha256"]
    capsys.readouterr()
    assert main(["grid", "plan", str(gfile)]) == 0
    assert "1 already finished)" in capsys.readouterr().out
    # the record as a run of an older vanilla.py would have left it
    rec["code"]["file_sha256"] = hashlib.sha256(b"an older vanilla.py").hexdigest()
    (r.run_dir / "record.json").write_text(json.dumps(rec))
    assert main(["grid", "plan", str(gfile)]) == 0
    out = capsys.readouterr().out
    assert "0 already finished, 1 stale" in out and "vanilla.py changed since the run" in out and str(r.run_dir) in out
    assert main(["grid", "launch", str(gfile)]) == 0  # without the flag: kept, and said so
    assert "pass --rerun-stale" in capsys.readouterr().out
    assert read_record(r.run_dir)["code"]["file_sha256"] == rec["code"]["file_sha256"]
    assert main(["grid", "launch", str(gfile), "--rerun-stale"]) == 0
    new = read_record(r.run_dir)
    assert new["status"] == "finished" and new["code"]["file_sha256"] == code_identity(get_method("vanilla"))["file_sha256"]
    (old,) = list((tmp_path / "grid" / ".superseded").iterdir())
    assert json.loads((old / "record.json").read_text())["code"]["file_sha256"] == rec["code"]["file_sha256"]
    recs, _ = scan_records(tmp_path / "grid")
    assert len(recs) == 1  # the superseded run is not part of the grid's results


def test_a_run_with_an_unreadable_data_folder_is_not_launched(tmp_path):
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump({"name": "nodata", "output": str(tmp_path / "grid"),
                                     "defaults": dict(TINY, dataset={"name": "imagefolder", "root": str(tmp_path / "no")}),
                                     "stages": {"only": {"runs": [{"seed": 0}]}}}))
    assert main(["grid", "launch", str(gfile)]) == 2
    assert not (tmp_path / "grid").exists()


def test_the_record_schema_version_is_read_migrated_or_refused_by_name(tmp_path, capsys):
    base = {"status": "finished", "method": "vanilla", "category": "baseline", "scheme": "offline", "dataset": "digits",
            "student": "cifar_resnet8", "pair": "resnet8", "seed": 0, "metrics": {"last_top1": 50.0}}
    cases = {"v1": dict(base, status="stopped"), "nov": {k: v for k, v in base.items()},
             "now": dict(base, schema=2), "newer": dict(base, schema=3), "odd": dict(base, schema="two")}
    cases["v1"]["schema"] = 1
    for name, rec in cases.items():
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / "record.json").write_text(json.dumps(rec))
    assert read_record(tmp_path / "src" / "v1")["status"] == "interrupted"  # schema 1's word, migrated
    assert read_record(tmp_path / "src" / "nov")["status"] == "finished"  # no version: schema 1
    assert read_record(tmp_path / "src" / "now")["schema"] == 2
    with pytest.raises(RecordError, match=r"schema 3 was written by a newer kdsuite; this one reads schemas 1 to 2"):
        read_record(tmp_path / "src" / "newer")
    with pytest.raises(RecordError, match=r"schema = 'two' is not a schema version; expected an integer 1 to 2"):
        read_record(tmp_path / "src" / "odd")
    newer = tmp_path / "src" / "newer" / "record.json"
    before = newer.read_bytes()
    with pytest.raises(RecordError):  # never overwritten by this kdsuite
        write_record(newer.parent, dict(base, status="running"))
    assert newer.read_bytes() == before
    capsys.readouterr()
    assert main(["table", "--source", str(tmp_path / "src")]) == 0
    out, err = capsys.readouterr()
    assert str(newer) in err and "upgrade kdsuite" in err and "Traceback" not in err
    from kdsuite.core.records import provenance
    assert provenance()["versions"]["kdsuite"]  # what the remedy points at is in every new record


def test_a_record_that_cannot_be_tabulated_is_named_not_a_crash(tmp_path, capsys):
    """A metric that is not a number makes the record unreadable (by name); a record naming no student is
    left out of tables by name; neither is a traceback."""
    good = {"status": "finished", "method": "kd", "category": "response", "scheme": "offline", "dataset": "digits",
            "student": "cifar_resnet8", "pair": "resnet8", "seed": 0, "metrics": {"last_top1": 50.0}}
    cases = {"text": dict(good, metrics={"last_top1": "high"}), "flag": dict(good, metrics={"best_top1": True}),
             "list": dict(good, metrics={"teacher_top1": [70.0, "x"]}), "nostudent": dict(good, student=None),
             "ok": good, "ok2": dict(good, seed=1, metrics={"last_top1": 52.0, "teacher_top1": [70.0, None]})}
    for name, rec in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(json.dumps(rec))
    for name, words in (("text", "metrics.last_top1 = 'high': expected a number"),
                        ("flag", "metrics.best_top1 = True: expected a number"),
                        ("list", "metrics.teacher_top1 = [70.0, 'x']: expected a number (or null) or a list")):
        with pytest.raises(RecordError, match=re.escape(words)):
            read_record(tmp_path / name)
    capsys.readouterr()
    assert main(["table", "--source", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "(2)" in out  # the two good seeds, nothing else
    assert f"{tmp_path / 'nostudent' / 'record.json'}: not tabulated, the record names no student" in err
    assert all(str(tmp_path / n / "record.json") in err for n in ("text", "flag", "list"))
