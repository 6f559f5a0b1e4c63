"""How a run that stops early ends: ``interrupted`` (resumable) or ``failed``, and what to print.

Role in the flow: :func:`kdsuite.experiments.run.run` trains inside :func:`stop_on_signals` and hands any
exception to :func:`classify`. SIGTERM (outside Slurm/submitit, which handles it itself) and Ctrl-C
stop the run at once; submitit's exit after checkpoint-and-requeue (``SystemExit: -1``) is a
preemption, not a failure. All three leave the run ``interrupted``: its last epoch checkpoint is the
resume point (resume is exact at epoch boundaries, so the epoch in progress is trained again).
submitit refusing to requeue after too many timeouts is a failure with that reason; ``grid launch
--rerun-failed`` resubmits it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator, Tuple


class RunInterrupted(BaseException):
    """SIGTERM / SIGINT arrived while a run trained (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise(signum, frame):
    raise RunInterrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`RunInterrupted` inside the block — only where nobody else
    handles them (the main thread, default handlers, not in a Slurm job): there SIGTERM belongs to Slurm
    and submitit (on preemption it precedes the USR2 that checkpoints and requeues the job)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        if sig == signal.SIGTERM and os.environ.get("SLURM_JOB_ID"):
            continue
        if signal.getsignal(sig) is default:
            saved[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def classify(e: BaseException) -> Tuple[str, str]:
    """``(status, reason)`` of a run that ended with ``e``."""
    if isinstance(e, RunInterrupted):
        return "interrupted", str(e)
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", "stopped by SIGINT (Ctrl-C)"
    if isinstance(e, SystemExit):
        return "interrupted", f"the job exited (SystemExit: {e.code}) — submitit's checkpoint-and-requeue on preemption"
    if type(e).__name__ == "UncompletedJobError" and "timed-out too many times" in str(e):
        return "failed", ("timeout: submitit stopped requeueing after the profile's max_num_timeout timeouts "
                          "(raise max_num_timeout or timeout_min; `grid launch --rerun-failed` resumes it)")
    return "failed", f"{type(e).__name__}: {e}"
