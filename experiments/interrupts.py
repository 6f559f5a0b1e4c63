"""How a run that stops early ends: ``interrupted`` (resumable) or ``failed``, and what to print.

Role in the flow: :func:`kdsuite.experiments.run.run` trains inside
:func:`kdsuite.engine.stop.stop_on_signals` and hands any exception to :func:`classify`. SIGTERM
(outside Slurm/submitit, which handles it itself) and Ctrl-C stop the run after the step in progress
with a mid-epoch checkpoint (see :mod:`kdsuite.engine.stop`); submitit's exit after
checkpoint-and-requeue (``SystemExit: -1``) is a preemption, not a failure. All three leave the run
``interrupted`` and resumable. submitit refusing to requeue after too many timeouts is a failure with
that reason; ``grid launch --rerun-failed`` resubmits it.
"""
from __future__ import annotations

from typing import Tuple

from kdsuite.engine.stop import RunInterrupted, stop_on_signals  # noqa: F401  (the run's entry points use both)


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
