"""Stopping a run on SIGTERM / SIGINT: at once, or after the current step with a checkpoint.

Role in the flow: :func:`kdsuite.experiments.run.run` trains inside :func:`stop_on_signals`; the
trainer marks the stretch where a stop can wait for the step in progress (:func:`checkpointable`)
and asks :func:`pending` after every step. A signal that arrives there lets the step finish; the
trainer then writes a mid-epoch checkpoint and raises :class:`RunInterrupted`, so a resume continues
from that step. Anywhere else (teacher evaluation, data set-up), or at a second signal, the run stops
at once and resumes from its last epoch checkpoint. In a Slurm job SIGTERM belongs to Slurm and
submitit (on preemption it precedes the USR2 that checkpoints and requeues the job) and is left alone.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, Optional


class RunInterrupted(BaseException):
    """SIGTERM / SIGINT arrived while a run trained (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int, at: str = ""):
        super().__init__(f"stopped by {signal.Signals(signum).name}{at}")
        self.signum = signum


_state = {"defer": 0, "pending": None}


def _handler(signum, frame):
    if _state["defer"] and _state["pending"] is None:
        _state["pending"] = signum
        print(f"kdsuite: {signal.Signals(signum).name} received: finishing this step and writing a checkpoint "
              f"(send it again to stop at once)", file=sys.stderr, flush=True)
        return
    raise RunInterrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT stop the run inside the block — only where nobody else handles them (the
    main thread, default handlers, SIGTERM not in a Slurm job)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        if sig == signal.SIGTERM and os.environ.get("SLURM_JOB_ID"):
            continue
        if signal.getsignal(sig) is default:
            saved[sig] = signal.signal(sig, _handler)
    _state["pending"] = None
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
        _state["pending"] = None


@contextlib.contextmanager
def checkpointable() -> Iterator[None]:
    """Inside the block a signal waits for the step in progress (the trainer polls :func:`pending`)."""
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1


def pending() -> Optional[int]:
    """The signal that asked the run to stop after this step, or None."""
    return _state["pending"]
