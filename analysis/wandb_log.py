"""Mirror a run to Weights & Biases. The local record stays the source of truth: every W&B call is
guarded, an error is reported once on stderr and logging is switched off for the rest of the run,
and training never stops because of W&B.

Modes: ``online``, ``offline`` (clusters without internet: ``wandb sync`` later) and ``disabled``.
The environment variables ``WANDB_MODE`` / ``WANDB_PROJECT`` / ``WANDB_ENTITY`` override the config.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional


class WandbMirror:
    def __init__(self, cfg: Dict[str, Any], run_id: str, run_dir: str, tags=(), group: Optional[str] = None,
                 name: Optional[str] = None):
        wcfg = cfg.get("wandb", {})
        self.mode = os.environ.get("WANDB_MODE", wcfg.get("mode", "disabled"))
        self.run = None
        if self.mode == "disabled":
            return
        try:
            import wandb

            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", wcfg.get("project") or "kdsuite"),
                                  entity=os.environ.get("WANDB_ENTITY", wcfg.get("entity")),
                                  group=wcfg.get("group") or group, tags=sorted(set(list(tags) + list(wcfg.get("tags") or []))),
                                  name=name, id=run_id[:32], resume="allow", mode=self.mode, dir=run_dir,
                                  config=cfg, reinit="finish_previous")
        except Exception as e:  # noqa: BLE001 — any W&B failure must not stop training
            self._fail("init", e)

    def _fail(self, what: str, e: Exception) -> None:
        print(f"[kdsuite] W&B {what} failed ({type(e).__name__}: {e}); continuing without W&B", file=sys.stderr)
        self.run = None

    def log(self, metrics: Dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            flat.update({f"lr/{k}": v for k, v in metrics.get("lr", {}).items()})
            self.run.log(flat, step=step)
        except Exception as e:  # noqa: BLE001
            self._fail("log", e)

    def finish(self, summary: Dict[str, Any], exit_code: int = 0) -> None:
        if self.run is None:
            return
        try:
            for k, v in summary.items():
                if isinstance(v, (int, float, str)) or v is None:
                    self.run.summary[k] = v
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)
