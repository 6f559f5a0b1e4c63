"""Mirror a run to Weights & Biases. The local record stays the source of truth: every W&B call is
guarded, an error is reported once on stderr and logging is switched off for the rest of the run,
and training never stops because of W&B.

What a run sends (read back by :mod:`kdsuite.analysis.wandb_source`; the record fields' W&B form, written
here and read there, is one codec: :mod:`kdsuite.analysis.wandb_codec`):

- ``project`` / ``entity``: ``WANDB_PROJECT`` / ``WANDB_ENTITY`` or the config's ``wandb.project`` /
  ``wandb.entity`` (default project ``kdsuite``); ``group``: the config's ``wandb.group`` or the grid
  name (config ``name``); ``tags``: category, method, teacher→student pair, dataset (+ ``wandb.tags``);
- ``config``: the full resolved config plus ``kdsuite``: the record's identity fields (run id,
  method, category, scheme, dataset, student, teachers, pair, seed) so a W&B run converts back into a
  record without the registry or the model zoo;
- per-epoch metrics (the trainer's log entries: ``train/*``, ``val/<model>/top1|top5``, ``lr/*``);
- the final summary ``final/*``: best/last top-1 and top-5, each teacher's accuracy
  (``final/teacher_top1`` = the first teacher, ``final/teacher_top1/<i>`` each one), wall time,
  images/s, student parameters, and ``final/status``.

Modes: ``online``, ``offline`` (clusters without internet: ``wandb sync`` later; the offline run log is
``<run_dir>/wandb/offline-run-*/run-*.wandb``) and ``disabled``. The environment variables
``WANDB_MODE`` / ``WANDB_PROJECT`` / ``WANDB_ENTITY`` override the config.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional

from kdsuite.analysis.wandb_codec import CONFIG_KEY, IDENTITY, identity_block, summary_from_record  # noqa: F401


class WandbMirror:
    def __init__(self, cfg: Dict[str, Any], run_id: str, run_dir: str, tags=(), group: Optional[str] = None,
                 name: Optional[str] = None, record: Optional[Dict[str, Any]] = None):
        wcfg = cfg.get("wandb") or {}
        self.mode = os.environ.get("WANDB_MODE", wcfg.get("mode", "disabled"))
        self.run = None
        self.failed = False
        self.record = record  # the run's record dict (updated in place by the run): the final summary's source
        if self.mode == "disabled":
            return
        try:
            import wandb

            config = dict(cfg)
            if record is not None:
                config[CONFIG_KEY] = identity_block(record)
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or wcfg.get("project") or "kdsuite",
                                  entity=os.environ.get("WANDB_ENTITY") or wcfg.get("entity"),
                                  group=wcfg.get("group") or group,
                                  tags=sorted({str(t)[:64] for t in list(tags) + list(wcfg.get("tags") or [])}),
                                  name=name, id=run_id[:32], resume="allow", mode=self.mode, dir=run_dir,
                                  config=config, reinit="finish_previous")
        except Exception as e:  # noqa: BLE001 — any W&B failure must not stop training
            self._fail("init", e)

    def _fail(self, what: str, e: BaseException) -> None:
        if not self.failed:  # reported once; the mirror is off for the rest of the run
            print(f"[kdsuite] W&B {what} failed ({type(e).__name__}: {e}); continuing without W&B", file=sys.stderr)
        self.failed = True
        self.run = None

    def log(self, metrics: Dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            flat.update({f"lr/{k}": v for k, v in (metrics.get("lr") or {}).items()})
            if isinstance(metrics.get("stage"), str):
                flat["stage_name"] = metrics["stage"]
            self.run.log(flat, step=step)
        except Exception as e:  # noqa: BLE001
            self._fail("log", e)

    def finish(self, summary: Optional[Dict[str, Any]] = None, exit_code: int = 0) -> None:
        if self.run is None:
            return
        try:
            full = summary_from_record(self.record) if self.record is not None else {}
            full.update(summary or {})
            for k, v in full.items():
                if isinstance(v, (int, float, str)) or v is None:
                    self.run.summary[k] = v
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)
        finally:
            self.run = None
