"""The single-run entry point: config -> zoo -> method plugin -> trainer -> run record (+ W&B).

:func:`run` is what the CLI, the local executor and every Slurm job call. It is idempotent: a run
whose folder already holds a finished record returns that record without training again, and an
interrupted run resumes from its last epoch checkpoint.
"""
from __future__ import annotations

import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from kdsuite import zoo
from kdsuite.core.fileio import check_writable_dir
from kdsuite.core.records import provenance, read_record, write_record
from kdsuite.analysis.wandb_log import WandbMirror
from kdsuite.experiments.config import ConfigError, config_hash, effective, settings_of, validate
from kdsuite.experiments.data import build_data, cache_loader
from kdsuite.experiments.identity import data_identity
from kdsuite.methods.identity import code_identity, method_variant, variant_label
from kdsuite.experiments.interrupts import classify, stop_on_signals
from kdsuite.experiments.lease import Lease
from kdsuite.experiments.run_paths import run_dir_for  # noqa: F401 (re-exported)
from kdsuite.experiments.search import resolve_search, student_label  # noqa: F401 (re-exported)
from kdsuite.experiments.teacher_checks import (TEACHER_META_KEYS, check_teacher_weights, teacher_entry,  # noqa: F401
                                              teacher_mismatch, teacher_record)
from kdsuite.engine import distributed
from kdsuite.methods import deployment
from kdsuite.methods.base import BuildContext
from kdsuite.engine.progress import Reporter
from kdsuite.methods.registry import CATEGORIES, get_method
from kdsuite.engine.trainer import Trainer, derive_seed, seed_everything
from kdsuite.zoo import taps as ztaps, teacher_input
from kdsuite.zoo.teachers import load_teacher, save_teacher


def resolve_teachers(cfg: Dict[str, Any]) -> None:
    """Fill each ``teachers[i]`` with the architecture and identity from its record; a named
    architecture that differs from the record's, or a teacher of another data set or view, is an error."""
    for i, t in enumerate(cfg["teachers"]):
        field = f"teachers[{i}].checkpoint"
        meta = teacher_record(t["checkpoint"], field)
        if t.get("arch") and t["arch"] != meta["arch"]:
            raise ConfigError(f"teachers[{i}].arch = {t['arch']!r} but the record at '{t['checkpoint']}' holds a "
                              f"{meta['arch']!r}")
        t.update(teacher_entry(t["checkpoint"], meta))
        typed = getattr(cfg, "settings", None)
        if typed is not None:  # the typed config says the same
            typed.teachers[i] = type(typed.teachers[i]).model_validate(t)
        problem = teacher_mismatch(cfg, f"{field}: the teacher", meta.get("dataset"), meta.get("view"))
        if problem:
            raise ConfigError(problem)
        check_teacher_weights(t["checkpoint"], meta, field)  # before any data is read


def prepare(raw: Mapping[str, Any]) -> Tuple[Dict[str, Any], str, Path]:
    """Validate and resolve ``raw``; returns ``(cfg, config_hash, run_dir)``. Nothing is written."""
    cfg = validate(raw)
    resolve_teachers(cfg)
    h = config_hash(cfg)
    return cfg, h, run_dir_for(cfg, h)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device = {name!r} is not a torch device (cpu, cuda, cuda:1, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {name!r} but CUDA is not available on this machine")
    return dev


def pair_label(student: str, teachers: List[str], views: Optional[Mapping[str, Any]] = None) -> str:
    """``resnet20→resnet8``; with paired views each side names its view: ``resnet20 (image)→resnet8 (edges)``."""
    s = zoo.display_name(student) + (f" ({views['student']})" if views else "")
    t = "+".join(zoo.display_name(a) for a in teachers) + (f" ({views['teacher']})" if views and teachers else "")
    return f"{t}→{s}" if teachers else s


@dataclass
class RunParts:
    """Everything :func:`build` makes from a resolved config, before training starts."""
    cfg: Dict[str, Any]
    hash: str
    run_dir: Path
    method: Any
    trainer: Trainer
    data: Any
    student: torch.nn.Module
    teacher_meta: List[Dict[str, Any]]
    device: torch.device
    effective: Dict[str, Any]
    search: Optional[Dict[str, Any]] = None  # a searched student: the choice and every candidate's score


def build(cfg: Dict[str, Any], h: str, run_dir: Path, reporter: Optional[Reporter] = None,
          log_fn=None) -> RunParts:
    """Data, student, teachers (checked against their records), the method plugin and the trainer."""
    typed = settings_of(cfg)  # validated once, by prepare(): the typed config travels with cfg
    search = resolve_search(cfg)  # a searched student: its architecture, chosen from the candidates' records
    cls = get_method(typed.method.name)
    device, dist_info = _place(typed)
    eff = effective(cfg, device.type)
    fields = tuple(cls.batch_fields)
    if typed.teacher_cache is not False and "index" not in fields:
        fields += ("index",)  # cache look-ups go by sample index; harmless when the cache stays off
    # the data gets the section's typed values (``train_fraction: 5e-1`` as a float, not as written)
    data = build_data(typed.dataset.model_dump(), device, pipeline=eff["pipeline"], fields=fields, dist_info=dist_info)
    in_chans = data.input_shape[0]

    def build_model(arch, num_classes=data.num_classes, in_chans=in_chans, **kw):
        return zoo.create_model(arch, num_classes=num_classes, in_chans=in_chans, **kw)

    student, teachers, teacher_meta = _models(typed, data, build_model, sync_bn=dist_info.active and device.type == "cuda")
    steps = typed.max_steps_per_epoch or (len(data.train) if data.train is not None else 1)
    ctx = BuildContext(num_classes=data.num_classes, input_shape=data.input_shape, epochs=typed.epochs,
                       steps_per_epoch=steps, batch_size=typed.dataset.batch_size, num_train=data.num_train,
                       build_model=build_model, data_mean=data.mean, data_std=data.std, train_labels=data.train_labels,
                       stage_pairs=tuple((p["student"], p["teacher"]) for p in typed.method.pairs or ()) or None)
    method = _method(cls, student, teachers, typed.method.hp, ctx)
    settings = typed.train_settings(precision=eff["precision"], channels_last=eff["channels_last"])
    cache_ok = method.teacher_cacheable and not data.augmented and data.train is not None
    if typed.teacher_cache is True and not cache_ok:
        raise ConfigError(f"teacher_cache = true, but teacher outputs cannot be reused here: it needs an offline "
                          f"method that reads only teacher logits (method '{cls.name}', teacher taps "
                          f"{method.t_taps}) and training images without random augmentation "
                          f"(dataset.augment = {typed.dataset.augment!r}); use auto or false")
    # one process per device: each would fill the whole cache, so it stays off there
    eff["teacher_cache"] = bool(cache_ok and typed.teacher_cache != False and not dist_info.active)  # noqa: E712
    eff["world_size"] = dist_info.world
    trainer = Trainer(method, data.train if cls.needs_train_data else None, data.test, settings, device,
                      run_dir=run_dir, log_fn=log_fn if dist_info.main else None,
                      reporter=reporter or Reporter(typed.progress if dist_info.main else "none",
                                                    prefix=f"[{run_dir.name}] "), dist_info=dist_info,
                      validation_loader=data.validation, teacher_test_loader=data.teacher_test, batch_fields=fields,
                      teacher_cache_loader=cache_loader(data.train, typed.dataset.eval_batch_size)
                      if eff["teacher_cache"] else None, teacher_cache_size=data.num_train)
    if eff["compile"]:
        # in place (Module.compile): module identity and state-dict keys stay, so checkpoints and
        # optimizer groups are the same with and without it; feature-tap traversals stay eager
        for model in [student, *teachers]:
            model.compile()
    return RunParts(cfg, h, run_dir, method, trainer, data, student, teacher_meta, device, eff, search)


def _place(typed) -> Tuple[torch.device, Any]:
    """The run's device and data-parallel process group (one process per GPU under torchrun / Slurm tasks)."""
    device = pick_device(typed.device)
    dist_info = distributed.init(device.type)
    if dist_info.active and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    if typed.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return device, dist_info


def _models(typed, data, build_model, sync_bn: bool) -> Tuple[torch.nn.Module, List[torch.nn.Module], List[Dict[str, Any]]]:
    """The student (seeded from the run's init seed) and the teachers, each loaded from its record after its
    metadata is checked against this run's data; every model checked against the data's input shape."""
    seed_everything(derive_seed(typed.seed, "init"))
    student = build_model(typed.student.arch, **typed.student.kwargs)
    zoo.check_input(student, typed.student.arch, data.input_shape, field="student.arch")
    if sync_bn and typed.sync_bn:
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
    teachers, teacher_meta = [], []
    for i, t in enumerate(typed.teachers):
        model, meta = load_teacher(t.checkpoint, build_model, field=f"teachers[{i}].checkpoint", arch=t.arch,
                                   num_classes=data.num_classes, dataset=data.name, in_chans=data.input_shape[0])
        step = teacher_input.for_record(meta, data.mean, data.std, data.input_shape, f"teachers[{i}].checkpoint")
        if step is not None:  # an imported teacher sees its own normalisation and size; the student keeps the data's
            teacher_input.attach(model, step)
            meta = dict(meta, input=step.describe())
        zoo.check_input(model, meta.get("arch", t.arch), teacher_input.input_shape(model, data.input_shape),
                        field=f"teachers[{i}].arch")
        teachers.append(model)
        teacher_meta.append(meta)
    return student, teachers, teacher_meta


def _method(cls, student, teachers, hp, ctx: BuildContext):
    """The method plugin around the models; a refusal between architecture families names them."""
    try:
        method = cls(student, teachers, hp, ctx)
        method.check_build()  # hyper-parameters against these models and this data, before the first step
        if ctx.stage_pairs and not method.stage_pairs:
            raise ConfigError(f"method.pairs = {[dict(student=s, teacher=t) for s, t in ctx.stage_pairs]}: method "
                              f"'{cls.name}' compares no teacher and student stages; allowed only for methods "
                              f"that pair stages (at, vid, nst, reviewkd, fitnet, fitnet_1stage, ...); drop it")
        return method
    except ConfigError as e:
        fams = [ztaps.family(student)] + [ztaps.family(t) for t in teachers]
        if any(f != "CNN" for f in fams):  # outside the CNN family: say which families the refusal is about
            who = f"student: {fams[0]} ({type(student).__name__})" + "".join(
                f"; teacher {i}: {f} ({type(t).__name__})" for i, (f, t) in enumerate(zip(fams[1:], teachers)))
            raise ConfigError(f"{e} [{who}]") from None
        raise


def _run_worker(cfg: Dict[str, Any], h: str, run_dir: Path, stop_after_epochs: Optional[int]) -> Dict[str, Any]:
    """A rank other than 0 of a data-parallel run: trains its share, writes nothing (rank 0 writes the
    record, checkpoints and W&B)."""
    parts = build(cfg, h, run_dir, Reporter("none"))
    res = parts.trainer.fit(stop_after_epochs=stop_after_epochs)
    return {"run_id": h, "status": res.status, "run_dir": str(run_dir), "rank": parts.trainer.dist.rank,
            "metrics": res.metrics}


def run(raw: Mapping[str, Any], stop_after_epochs: Optional[int] = None, reporter: Optional[Reporter] = None,
        prepared: Optional[Tuple[Dict[str, Any], str, Path]] = None) -> Dict[str, Any]:
    """Train one run to completion (or ``stop_after_epochs``) and return its record."""
    cfg, h, run_dir = prepared or prepare(raw)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run folder '{run_dir}' is a file, not a folder; move it away (output.root = "
                          f"'{cfg['output']['root']}')")
    existing = read_record(run_dir)
    if existing is not None and existing.get("status") in ("finished", "diverged"):
        # a diverged run diverges again when rerun with the same code and config
        print(f"[{run_dir.name}] reused, not retrained: its record is {existing['status']} ({run_dir})",
              file=sys.stderr, flush=True)
        return existing
    check_writable_dir(cfg["output"]["root"], "output.root")  # before any data is read or model built
    check_writable_dir(run_dir, "run folder")
    distributed.slurm_export()  # a Slurm job with several tasks: one process per device
    if not distributed.from_env().main:
        return _run_worker(cfg, h, run_dir, stop_after_epochs)
    created = not run_dir.exists()
    try:
        with Lease(run_dir), stop_on_signals():  # one process per run folder; SIGTERM/Ctrl-C → interrupted
            return _run_main(cfg, h, run_dir, stop_after_epochs, reporter)
    except ConfigError:
        # refused while building (before any record): the folder this call made holds only its lease files
        if created and read_record(run_dir) is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run_main(cfg: Dict[str, Any], h: str, run_dir: Path, stop_after_epochs: Optional[int],
              reporter: Optional[Reporter]) -> Dict[str, Any]:
    """The training part of :func:`run`, holding the run's lease."""
    existing = read_record(run_dir)
    if existing is not None and existing.get("status") == "finished":  # finished by another job meanwhile
        return existing
    mirror_box: List[Any] = []
    parts = build(cfg, h, run_dir, reporter, log_fn=lambda entry, step: mirror_box[0].log(entry, step))
    cls, data, method = type(parts.method), parts.data, parts.method
    record = _started_record(cfg, h, run_dir, parts)
    write_record(run_dir, record)
    tags = [cls.category, cls.name, record["pair"], data.name]
    mirror = WandbMirror(cfg, h, str(run_dir), tags=tags, group=cfg["name"], name=run_dir.name, record=record)
    mirror_box.append(mirror)
    t0 = time.time()
    try:
        res = parts.trainer.fit(stop_after_epochs=stop_after_epochs)
    except BaseException as e:
        status, reason = classify(e)  # interrupted (signal, preemption: resumable) or failed
        record.update(status=status, error=reason, traceback=traceback.format_exc(limit=20),
                      wall_time_s=time.time() - t0)
        write_record(run_dir, record)
        mirror.finish({"status": status}, exit_code=1)
        if status == "interrupted":
            print(f"[{run_dir.name}] interrupted ({reason}); resumable from its last checkpoint: run the "
                  f"same command again, or relaunch the grid", file=sys.stderr, flush=True)
        raise
    metrics = dict(res.metrics)
    deployed_parts = deployment.inference_parts(method)  # what runs at inference, e.g. a borrowed teacher head
    metrics["student_params"] = deployment.deployed_params(deployed_parts)
    metrics["wall_time_s"] = time.time() - t0
    metrics["teacher_record_top1"] = [m.get("top1") for m in parts.teacher_meta]
    if res.status == "finished":
        metrics.update(method.record_metrics(parts))  # e.g. quantized methods: bit widths, the int8 model
    record.update(status={"stopped": "interrupted"}.get(res.status, res.status), metrics=metrics,
                  inference_parts=deployed_parts,
                  history=res.history, stage_results=res.stage_results, divergence=res.divergence, scale=res.scale,
                  finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if res.status == "finished" and cfg["export_teacher"]:
        record["teacher_export"] = _export_teacher(cfg, h, run_dir, parts, metrics, deployed_parts)
    write_record(run_dir, record)
    mirror.finish({f"final/{k}": v for k, v in metrics.items() if not isinstance(v, list)})
    return record


def _started_record(cfg: Dict[str, Any], h: str, run_dir: Path, parts: RunParts) -> Dict[str, Any]:
    """The record a run writes before its first step: identity (config, hash, data, code, provenance), what
    it is (method, pair, variant) and how it is built (effective settings, the feature plan)."""
    cls, data, method = type(parts.method), parts.data, parts.method
    teacher_archs = [t["arch"] for t in cfg["teachers"]]
    variant = method_variant(cls, cfg["method"]["hparams"])
    if parts.search:
        variant["student"] = f"searched by {parts.search['proxy']}"
    return {
        "run_id": h, "config_hash": h, "status": "running", "config": cfg, "seed": cfg["seed"],
        "name": cfg["name"], "method": cls.name, "category": cls.category, "scheme": cls.scheme,
        "category_title": CATEGORIES[cls.category].title, "paper": cls.paper,
        "dataset": data.name, "student": cfg["student"]["arch"], "student_name": zoo.display_name(cfg["student"]["arch"]),
        "teachers": teacher_archs, "teacher_names": [zoo.display_name(a) for a in teacher_archs],
        "pair": pair_label(cfg["student"]["arch"], teacher_archs, cfg["dataset"].get("views")), "run_dir": str(run_dir),
        "variant": variant, "variant_label": variant_label(variant),
        "data": dict(data_identity(cfg["dataset"]), split=data.split),
        "code": code_identity(cls), "search": parts.search,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance": provenance(), "effective": parts.effective,
        "features": method.feature_plan(),  # each side's family and taps, token → map steps, stage pairs and rule
        "protocol": protocol_facts(cfg, method),
        # per teacher: the step to its own input (an imported teacher's data_config), or None (the data's input)
        "teacher_inputs": [m.get("input") for m in parts.teacher_meta],
    }


def protocol_facts(cfg: Dict[str, Any], method: Any) -> Dict[str, Any]:
    """What a table must know to compare the run fairly: epochs, augmented views per step (each a student and a
    forward of every teacher), the teacher parts the deployed student runs (SimKD's borrowed head)."""
    views = list(cfg["dataset"].get("aug_views") or ["weak"])
    parts = deployment.inference_parts(method)
    n_teachers = len(cfg["teachers"])
    return {"epochs": cfg["epochs"], "aug_views": views, "views_per_step": len(views),
            "forwards_per_step": {"student": len(views), "teachers": len(views) * n_teachers},
            "teacher_parts": sorted(p for p, e in parts.items() if str(e["source"]).startswith("teacher"))}


def _export_teacher(cfg: Dict[str, Any], h: str, run_dir: Path, parts: RunParts, metrics: Mapping[str, Any],
                    deployed_parts: Any) -> Dict[str, Any]:
    """Save the finished run's deployed model as a teacher record (weights + teacher.json) in its folder."""
    cls, data = type(parts.method), parts.data
    exported, composite = deployment.export_module(parts.method)
    meta = save_teacher(exported, run_dir, {
        "arch": cfg["student"]["arch"], "num_classes": data.num_classes, "in_chans": data.input_shape[0],
        "model_kwargs": {k: v for k, v in cfg["student"]["kwargs"].items() if k != "pretrained"},
        "dataset": data.name, "image_size": data.input_shape[-1],
        **({"view": cfg["dataset"]["views"]["student"]} if cfg["dataset"].get("views") else {}),
        **({"deployed_by": cls.name, "inference_parts": deployed_parts} if composite else {}),
        "top1": metrics.get("last_top1"), "top5": metrics.get("last_top5"), "config_hash": h})
    return {"sha256": meta["sha256"], "path": str(run_dir)}
