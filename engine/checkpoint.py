"""Checkpoints and exact resume: seeds derived from the run seed, the global RNG states, and the
checkpoint the trainer writes after each epoch (or mid-epoch on a stop signal) and resumes from.

Role in the flow: :meth:`kdsuite.engine.trainer.Trainer.fit` calls :meth:`Checkpointing._resume_state`
once (the state a run starts or resumes with), the epoch loop (:mod:`kdsuite.engine.epoch`) seeds every
epoch with :func:`derive_seed` / :func:`seed_everything` and saves through :meth:`Checkpointing._save`;
the file itself is written atomically by :func:`kdsuite.core.fileio.save_checkpoint`.
"""
from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from kdsuite.core.errors import KdsuiteError
from kdsuite.core.fileio import load_latest_checkpoint, save_checkpoint
from kdsuite.engine import distributed
from kdsuite.methods.base import Distiller, Stage

CHECKPOINT_FORMAT = 1


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and a path (stage, epoch ...); stable across processes."""
    h = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)

def _rng_states() -> Dict[str, Any]:
    """The global RNG states as tensors and plain numbers (a checkpoint is read with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
           "python": [version, torch.tensor(py_state, dtype=torch.int64), py_gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = states["python"]
    random.setstate((version, tuple(int(v) for v in py_state.tolist()), py_gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpointing:
    """The trainer's checkpoint side (a mixin of :class:`kdsuite.engine.trainer.Trainer`): where the
    checkpoint lives, saving and loading it, and the run state a fresh or resumed run starts from."""
    method: Distiller
    dist: distributed.DistInfo
    run_dir: Optional[Path]
    optimizers: Dict[str, torch.optim.Optimizer]

    def _checkpoint_path(self) -> Optional[Path]:
        return self.run_dir / "checkpoint.pt" if self.run_dir is not None else None

    def _save(self, state: Dict[str, Any]) -> None:
        path = self._checkpoint_path()
        if path is None or not self.dist.main:
            return
        state = dict(state, format=CHECKPOINT_FORMAT, method=self.method.state_dict(),
                     optimizers={n: o.state_dict() for n, o in self.optimizers.items()})
        save_checkpoint(state, path)

    def _load(self) -> Optional[Dict[str, Any]]:
        path = self._checkpoint_path()
        if path is None:
            return None
        ckpt = load_latest_checkpoint(path, log=lambda msg: print(f"[{self.run_dir.name}] {msg}", file=sys.stderr,
                                                                  flush=True))
        if ckpt is None:
            return None
        aside = "move it aside (or delete it) and run again to train this run from the start"
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            fmt = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
            raise KdsuiteError(f"{path}: not a kdsuite checkpoint of this version (format {fmt!r}, this kdsuite "
                               f"writes {CHECKPOINT_FORMAT}); {aside}")
        try:
            self.method.load_state_dict(ckpt["method"])
        except (RuntimeError, KeyError, TypeError) as e:  # torch names missing / unexpected keys and shapes
            first = str(e).replace("\n", " ").strip()
            raise KdsuiteError(f"{path}: this checkpoint is not this run's — its tensors do not fit the run's "
                               f"models ({first[:300]}{'…' if len(first) > 300 else ''}); {aside}") from None
        return ckpt

    def _resume_state(self, ckpt: Optional[Dict[str, Any]], stages: List[Stage]) -> Dict[str, Any]:
        """The run state :meth:`kdsuite.engine.trainer.Trainer.fit` starts from: a fresh one, or the one
        stored in ``ckpt`` (then the main process says where the run resumes)."""
        if ckpt is None:
            state: Dict[str, Any] = {"stage_index": 0, "epoch": 0, "history": [], "stage_results": {},
                                     "teacher_eval": None, "train_time": 0.0, "images": 0, "stage_started": False,
                                     "scale": {}}
        else:
            state = {k: ckpt[k] for k in ("stage_index", "epoch", "history", "stage_results", "teacher_eval",
                                          "train_time", "images", "stage_started")}
            state["mid"] = ckpt.get("mid")
            state["scale"] = ckpt.get("scale", {})  # the step-0 scale check (absent from older checkpoints)
            if self.dist.main:
                where = f" of stage '{stages[state['stage_index']].name}'" if len(stages) > 1 and \
                    state["stage_index"] < len(stages) else ""
                at = f"step {state['mid']['step']} of epoch {state['epoch'] + 1}" if state["mid"] \
                    else f"epoch {state['epoch']}"
                print(f"[{self.run_dir.name}] resuming from {at}{where} "
                      f"({len(state['history'])} epochs done, from its checkpoint)", file=sys.stderr, flush=True)
        return state
