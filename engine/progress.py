"""Progress a person can follow: a live tqdm bar in a terminal, plain periodic lines in batch logs.

The trainer calls :meth:`Reporter.update` only every ``log_every`` steps, with numbers it has
already synchronised, so reporting never makes a GPU wait at every step.
"""
from __future__ import annotations

import sys
import time
from typing import Dict, Optional, TextIO


def _fmt(metrics: Dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


class Reporter:
    def __init__(self, mode: str = "auto", stream: Optional[TextIO] = None, prefix: str = ""):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        if mode not in ("bar", "lines", "none"):
            raise ValueError(f"progress mode must be auto, bar, lines or none, got {mode!r}")
        self.mode = mode
        self.prefix = prefix
        self._bar = None
        self._t0 = 0.0
        self._label = ""
        self._steps = 0

    def start_epoch(self, label: str, steps: int) -> None:
        self._label, self._steps, self._t0 = label, steps, time.time()
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=steps, desc=f"{self.prefix}{label}", file=self.stream, leave=False,
                             dynamic_ncols=True)

    def update(self, step: int, metrics: Dict[str, float]) -> None:
        if self.mode == "bar" and self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=True)
        elif self.mode == "lines":
            rate = step / max(time.time() - self._t0, 1e-9)
            print(f"{self.prefix}{self._label} step {step}/{self._steps} {_fmt(metrics)} ({rate:.1f} it/s)",
                  file=self.stream, flush=True)

    def end_epoch(self, summary: Dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.mode != "none":
            print(f"{self.prefix}{self._label} done in {time.time() - self._t0:.1f}s {_fmt(summary)}",
                  file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self.mode != "none":
            print(f"{self.prefix}{text}", file=self.stream, flush=True)
