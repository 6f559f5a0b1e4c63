"""The method plugin API: a :class:`Distiller` wraps student, teacher(s) and its own extra modules.

Role in the flow: the run entry point builds models with the zoo, instantiates the plugin, and the
shared trainer (``kdsuite.engine.trainer``) drives it. A plugin is one file that declares

- ``name``, ``category`` (a registry category), ``scheme`` (offline / online / self / data_free),
  ``paper`` and ``equation`` (what it implements);
- ``hparams``: ``{name: HParam(default, range...)}``, overridable per run;
- ``student_taps`` / ``teacher_taps``: the intermediate features it needs (see ``kdsuite.zoo.taps``);
- ``num_teachers``: how many frozen teachers it takes (``0``, an exact count, or ``(min, None)``);
- extra trainable modules, created in ``__init__`` as attributes (connectors, regressors, heads,
  memory banks as buffers, peers, generators, discriminators ...);

and implements :meth:`forward_train` returning a dict of named, already-weighted losses. The
trainer sums them, back-propagates, steps the optimizer and logs each term.

Methods whose scheme needs more than one optimizer (online peers, generators, discriminators)
override :meth:`optim_groups` to name several parameter groups and :meth:`train_step` to alternate
``trainer.optimize(group, losses)`` calls; multi-stage methods (hint/initialisation stages,
born-again generations) override :meth:`stages` and :meth:`on_stage_start`. The trainer still owns
the optimizers, schedules, precision, checkpoints and evaluation.

Teachers are frozen and are not sub-modules: they never enter an optimizer or a checkpoint (they
are reloaded from their own records), and ``Distiller.train()`` never flips them out of eval mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from kdsuite.methods import build_checks, pairing
from kdsuite.methods.components.connectors import TOKENS_TO_MAP, tokens_to_map
from kdsuite.methods.hparams import ConfigError
from kdsuite.methods.pairing import PAIRING_RULE  # noqa: F401 (re-exported)
from kdsuite.zoo import taps as ztaps


@dataclass
class Stage:
    """One phase of training. ``optimizers``: the groups stepped in this stage (None = all).
    ``step``: the training step of this stage, with ``train_step``'s signature (None = the plugin's
    ``train_step``); the trainer dispatches to it, so a pre-training stage (FitNet's hint, FSP's
    init, ...) needs no branch on the stage name in ``train_step``."""
    name: str
    epochs: int
    optimizers: Optional[Sequence[str]] = None
    evaluate: bool = True
    step: Optional[Callable[..., Dict[str, torch.Tensor]]] = None


@dataclass
class OptimGroup:
    """Parameters stepped by one optimizer. ``defaults`` override the run's ``optim`` section for
    this group (e.g. a generator's Adam), and the run's ``optimizers.<name>`` overrides both;
    ``schedule`` likewise overrides the run's ``schedule`` section."""
    params: List[nn.Parameter]
    defaults: Dict[str, Any] = field(default_factory=dict)
    schedule: Dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildContext:
    """What a plugin may know about the run when it builds its modules."""
    num_classes: int
    input_shape: Tuple[int, int, int]
    epochs: int
    steps_per_epoch: int
    batch_size: int
    num_train: int = 0
    build_model: Optional[Callable[..., nn.Module]] = None  # zoo factory (online peers, generators ...)
    data_mean: Tuple[float, ...] = ()
    data_std: Tuple[float, ...] = ()
    # (num_train,) class of every training sample, by dataset index; None where the data pipeline
    # cannot tell (CRD's class-aware negative sampling needs it)
    train_labels: Optional[torch.Tensor] = None
    # the run's method.pairs as (student tap, teacher tap): used instead of the stated pairing rule
    stage_pairs: Optional[Tuple[Tuple[str, str], ...]] = None


@dataclass
class Progress:
    """Where training is; the trainer updates it before every step."""
    stage: str = "main"
    stage_index: int = 0
    epoch: int = 0            # 0-based epoch within the stage
    epoch_float: float = 0.0  # epoch + fraction of it done
    step: int = 0             # global optimisation step within the stage
    total_epochs: int = 1


class Distiller(nn.Module):
    name: str = ""
    category: str = ""
    scheme: str = "offline"
    paper: str = ""
    equation: str = ""
    hparams: Mapping[str, Any] = {}
    student_taps: Sequence[str] = ()
    teacher_taps: Sequence[str] = ()
    num_teachers: Union[int, Tuple[int, Optional[int]]] = 1
    needs_train_data: bool = True
    # what each training batch holds: ("x", "y") plus, on request, "index" (the samples' positions in
    # the training set) and "pair_x" (for each sample another training image of the same class);
    # the extras reach the plugin as ``self.batch_extras[name]`` before each ``train_step``
    batch_fields: Sequence[str] = ("x", "y")
    # hyper-parameters that make tiny smoke runs (contract test, demo) meaningful, e.g. small memory banks
    smoke_hparams: Mapping[str, Any] = {}
    # how tables and figures print the method (``kd`` → "KD"); unset: the registry key
    display_name: Optional[str] = None
    # loss keys of the method's own terms (contract test); None = every key but the label terms
    distill_terms: Optional[Sequence[str]] = None
    # loss keys that fit the labels rather than a teacher; None = "ce", "bce", "ce_*" and "ce<digit>…"
    # (kdsuite.testing.is_label_term). The kit's "moves toward the teacher" check trains without them
    label_terms: Optional[Sequence[str]] = None
    # what the kit measures to see distillation move the student toward its teacher (with the label terms
    # off, on held-out batches, against the untouched student): "teacher_kl" — KL(teacher ‖ deployed
    # student) of their predictions, the default for methods with teachers; "terms" — the method's own
    # distillation terms, in absolute value, on fresh batches (feature/relation terms that need not move
    # the logits within a few steps, methods without a teacher, teachers on another view)
    check_discrepancy: str = "teacher_kl"
    # data-free methods: the synthetic images "teacher_kl" is measured on: "fresh" (new samples after training)
    # or "trained" (the last two batches trained on: DeepInversion's per-batch images; docs/add-a-method.md)
    check_synthetic: str = "fresh"
    # optimizer groups that maximise what the student minimises (min-max methods: DFAD's generator). Such a
    # term need not fall while both sides learn, so the contract test holds these groups fixed and checks
    # that the student's own objective falls against them.
    adversary_groups: Sequence[str] = ()
    # how token taps (ViT / MLP-Mixer blocks) reach the plugin: "map" = on their patch grid, prefix tokens
    # dropped (connectors.tokens_to_map; recorded in "features"); "native" = token sequences as given
    feature_format: str = "map"
    # non-empty: why this method's knowledge does not transfer between two architecture families
    # (kdsuite.zoo.taps.family); a teacher of another family than the student's is refused with it
    same_family_only: str = ""
    # data-free methods (needs_train_data = False): images they generate per training step; the trainer
    # counts them as the step's samples (throughput, data-parallel sharding)
    synthetic_batch_size: int = 0
    # hyper-parameters that name a feature stage (feat<i>) of the student (and, within one family, of the
    # teacher): checked against the built models before the taps resolve (kdsuite.methods.build_checks)
    stage_hparams: Sequence[str] = ()
    # hyper-parameters that count rows of the training set (CRD's negatives), each with why: they must stay
    # below num_train — checked when a config is validated (grid plan) and again at build (check_build)
    below_num_train: Mapping[str, str] = {}
    # term → kdsuite.methods.scale.ScaleBand: term / CE at step 0 at the method's reference recipe, where
    # the trainer's scale check expects a run to start (unstated terms: the suite-wide band)
    scale_band: Mapping[str, Any] = {}
    # loss keys of other players (a discriminator's own losses): not compared with the student's CE
    scale_exempt: Sequence[str] = ()

    # set in __init__ (declared here for type checkers: nn.Module's __getattr__ would type them Tensor | Module)
    student: nn.Module
    _teachers: List[nn.Module]         # plain attributes, not sub-modules: a method's state dict holds no teacher
    _tap_infos: Dict[int, Dict[str, Any]]
    _logit_cache: Optional[List[torch.Tensor]]
    s_taps: List[str]
    t_taps: List[List[str]]

    def __init__(self, student: nn.Module, teachers: Sequence[nn.Module], hp: SimpleNamespace, ctx: BuildContext):
        super().__init__()
        self.student = student
        object.__setattr__(self, "_teachers", list(teachers))
        self.hp = hp
        self.ctx = ctx
        self.progress = Progress(total_epochs=ctx.epochs)
        self.check_families()
        build_checks.resolve_taps(self)  # the stage_hparams checked first, against these models
        self.stage_pairs: List[Dict[str, Any]] = []
        object.__setattr__(self, "_tap_infos", {})  # id(model) -> {tap: TapInfo}, probed on first use
        self.batch_extras: Dict[str, torch.Tensor] = {}
        object.__setattr__(self, "_logit_cache", None)  # [teacher] -> (N, C) logits, filled by the trainer

    # ---- class-level helpers -------------------------------------------------------------
    @classmethod
    def teacher_count_ok(cls, n: int) -> bool:
        spec = cls.num_teachers
        if isinstance(spec, int):
            return n == spec
        low, high = spec
        return n >= low and (high is None or n <= high)

    @classmethod
    def teacher_count_text(cls) -> str:
        spec = cls.num_teachers
        if isinstance(spec, int):
            return f"exactly {spec}"
        low, high = spec
        return f"at least {low}" if high is None else f"{low} to {high}"

    # ---- models --------------------------------------------------------------------------
    @property
    def teachers(self) -> List[nn.Module]:
        return self._teachers

    @property
    def teacher(self) -> nn.Module:
        return self._teachers[0]

    def train(self, mode: bool = True):
        super().train(mode)
        for t in self._teachers:
            t.eval()
        return self

    # ---- families, tap descriptions, token → map ------------------------------------------
    def families(self) -> Tuple[str, List[str]]:
        return ztaps.family(self.student), [ztaps.family(t) for t in self._teachers]

    def check_families(self) -> None:
        """Refuse a teacher of another family when the method's knowledge does not transfer across families."""
        if not self.same_family_only:
            return
        s_fam, t_fams = self.families()
        for i, fam in enumerate(t_fams):
            if fam != s_fam:
                raise ConfigError(f"method '{self.name}' does not transfer between families: teacher {i} is a {fam} "
                                  f"({type(self._teachers[i]).__name__}) and the student a {s_fam} "
                                  f"({type(self.student).__name__}); {self.same_family_only}")

    def tap_infos(self, model: nn.Module, taps: Sequence[str]) -> Dict[str, "ztaps.TapInfo"]:
        """:class:`kdsuite.zoo.taps.TapInfo` of ``taps`` of ``model`` (feature taps only), probed once."""
        cache = self._tap_infos.setdefault(id(model), {})
        need = [t for t in taps if t.startswith("feat") and t not in cache]
        if need:
            cache.update(ztaps.tap_info(model, need, self.ctx.input_shape))
        return {t: cache[t] for t in taps if t in cache}

    def _as_maps(self, model: nn.Module, taps: Sequence[str], feats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if self.feature_format != "map" or not ztaps.is_token_model(model):
            return feats
        for k, info in self.tap_infos(model, [t for t in taps if t in feats]).items():
            if info.kind == "tokens":
                feats[k] = tokens_to_map(feats[k], info.grid, info.prefix_tokens)
        return feats

    def feature_plan(self) -> Dict[str, Any]:
        """What the run record keeps under ``features``: each side's family, every tap it reads (what it
        is, its grid and relative depth, how it reaches the plugin) and the stage pairs with their rule."""
        def side(model, taps):
            infos = self.tap_infos(model, taps)
            out = []
            for t in taps:
                if t not in infos:
                    out.append({"name": t})
                    continue
                d = infos[t].as_dict()
                d["as"] = (TOKENS_TO_MAP if d["kind"] == "tokens" and self.feature_format == "map" else d["kind"])
                out.append(d)
            return {"family": ztaps.family(model), "model": type(model).__name__, "taps": out}

        plan: Dict[str, Any] = {"student": side(self.student, self.s_taps),
                                "teachers": [side(t, tt) for t, tt in zip(self._teachers, self.t_taps)],
                                "feature_format": self.feature_format}
        if self.stage_pairs:
            plan["pairs"] = self.stage_pairs
            explicit = any(p["rule"] == pairing.EXPLICIT_RULE for p in self.stage_pairs)
            plan["pairing_rule"] = pairing.EXPLICIT_RULE if explicit else PAIRING_RULE
        return plan

    def student_forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        logits, feats = ztaps.extract(self.student, x, self.s_taps)
        return logits, self._as_maps(self.student, self.s_taps, feats)

    def teacher_forward(self, x: torch.Tensor, index: int = 0) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Frozen teacher ``index`` on ``x``: no graph is kept. With the teacher-output cache on (the
        trainer fills it once for methods that read only logits, when the training images are not
        randomly augmented) the logits are looked up by the batch's sample indices instead."""
        cache = self._logit_cache
        if cache is not None and "index" in self.batch_extras:
            return cache[index][self.batch_extras["index"]], {}
        with torch.no_grad():
            logits, feats = ztaps.extract(self._teachers[index], x, self.t_taps[index])
        return logits, self._as_maps(self._teachers[index], self.t_taps[index], feats)

    @property
    def teacher_cacheable(self) -> bool:
        """Whether teacher outputs can be cached: an offline method that reads only teacher logits."""
        return self.scheme == "offline" and bool(self._teachers) and all(t in ([], ["logits"]) for t in self.t_taps)

    def set_teacher_cache(self, logits: Optional[List[torch.Tensor]]) -> None:
        object.__setattr__(self, "_logit_cache", logits)

    def require_paired_stages(self, index: int = 0) -> None:
        """For methods that compare the student's stages with the teacher's pair by pair (AT, VID, NST …):
        the run's ``method.pairs`` when given, else the stated rule (:func:`kdsuite.methods.pairing.by_rule`:
        one to one within a family of equal stage counts, otherwise by relative depth). ``s_taps`` /
        ``t_taps[index]`` are cut to the pairs, in order; the pairs are kept in ``stage_pairs`` (the
        record's ``features.pairs``)."""
        s_model, t_model = self.student, self._teachers[index]
        # only stage taps (feat<i>, feat<i>_pre) are paired; pool / logits taps (ReviewKD's pooled vector) stay
        s_taps, s_rest = pairing.split_stage_taps(self.s_taps)
        t_taps, t_rest = pairing.split_stage_taps(self.t_taps[index])
        if self.ctx.stage_pairs:
            pairs, rule = pairing.check_explicit(self.ctx.stage_pairs, s_model, t_model), pairing.EXPLICIT_RULE
        elif not s_taps or not t_taps:
            raise ConfigError(f"method '{self.name}': no stages to pair (student {s_taps}, teacher {t_taps})")
        else:
            pairs, rule = pairing.by_rule(s_model, t_model, s_taps, t_taps)
        self.s_taps = [p[0] for p in pairs] + s_rest
        self.t_taps[index] = [p[1] for p in pairs] + t_rest
        self.stage_pairs = pairing.records(s_model, t_model, pairs, rule)

    def paired_teacher_tap(self, s_tap: str, index: int = 0) -> str:
        """The teacher stage a single-stage method (FitNet's hint, …) pairs with student tap ``s_tap``:
        the one ``method.pairs`` names, else within one family the same stage number (RepDistiller's
        convention), across families the teacher stage nearest in relative depth; recorded in ``stage_pairs``."""
        s_model, t_model = self.student, self._teachers[index]
        if self.ctx.stage_pairs:
            t_tap = pairing.explicit_hint(self.ctx.stage_pairs, s_tap, self.name, s_model, t_model)
            rule = pairing.EXPLICIT_RULE
        else:
            t_tap, rule = pairing.hint_by_rule(s_model, t_model, s_tap, self.name)
        self.stage_pairs = pairing.records(s_model, t_model, [(s_tap, t_tap)], rule)
        return t_tap

    def _shapes(self, model: nn.Module, taps: Sequence[str]) -> Dict[str, Tuple[int, ...]]:
        shapes = ztaps.probe_shapes(model, taps, self.ctx.input_shape)
        if self.feature_format == "map" and ztaps.is_token_model(model):
            for k, info in self.tap_infos(model, taps).items():
                if info.kind == "tokens" and info.grid is not None:  # a token tap always has its grid
                    shapes[k] = (info.channels, *info.grid)
        return shapes

    def student_shapes(self) -> Dict[str, Tuple[int, ...]]:
        return self._shapes(self.student, self.s_taps)

    def teacher_shapes(self, index: int = 0) -> Dict[str, Tuple[int, ...]]:
        return self._shapes(self._teachers[index], self.t_taps[index])

    def check_build(self) -> None:
        """Called by the run once the plugin is built, before the first step: refuse a hyper-parameter that
        cannot work with these models or this data (``self.ctx``), naming ``method.hparams.<name>``, the value
        and what is allowed (:func:`kdsuite.methods.build_checks.require_at_most`). Default: ``below_num_train``."""
        build_checks.check_below_num_train(self)

    # ---- what the trainer calls ----------------------------------------------------------
    def forward_train(self, x: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_step(self, batch, trainer) -> Dict[str, torch.Tensor]:
        """One optimisation step. Default: one loss dict, one optimizer (``student``)."""
        x, y = batch[0], batch[1]
        losses = self.forward_train(x, y)
        trainer.optimize("student", losses)
        return losses

    def optim_groups(self) -> Dict[str, OptimGroup]:
        """Default: every trainable parameter of the plugin (student + extra modules) in one group."""
        return {"student": OptimGroup([p for p in self.parameters() if p.requires_grad])}

    def stages(self) -> List[Stage]:
        return [Stage("main", self.ctx.epochs)]

    def on_stage_start(self, stage: Stage, trainer) -> None:
        """Called when a stage begins (not again when a run resumes inside it). Create every module
        in ``__init__`` (a checkpoint is loaded into that structure); stage hooks only change
        values (copy weights, re-initialise, freeze)."""

    def on_epoch_end(self, trainer) -> None:
        """Called after each training epoch, before evaluation and the checkpoint."""

    def record_metrics(self, parts) -> Dict[str, Any]:
        """Extra measurements of the trained student for the run record's ``metrics`` (quantized methods: bit
        widths, the converted int8 model's accuracy, size and CPU latency). Called once a run has finished,
        with the run's parts (data, trainer, device). Default: none."""
        return {}

    def deployed_student(self) -> nn.Module:
        """The model used at inference: what the headline accuracy measures, what the record's
        ``student_params`` counts and what ``export_teacher`` writes. Default: ``self.student``. A method
        that predicts through more than the student (SimKD: the student's features through a projector
        into the teacher's classifier) returns a module holding every part it runs; parts borrowed from a
        teacher are named in the record's ``inference_parts``. Build it here (not as an attribute in
        ``__init__``): teacher parts must not become sub-modules of the plugin."""
        return self.student

    def eval_models(self) -> Dict[str, nn.Module]:
        """Models evaluated each eval epoch; ``student`` (default: :meth:`deployed_student`) is the
        headline metric. Override to add peers or exits, keeping ``"student": self.deployed_student()``."""
        return {"student": self.deployed_student()}
