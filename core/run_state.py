"""The one rule for a grid run's state, and what a launch does with it.

Role in the flow: ``kdsuite grid plan|launch|status`` and both executors (local, Slurm) ask
:func:`run_state` what a run *is* and :func:`launch_action` what a launch *does* with it; nothing else
decides. The inputs are plain values (this module reads no files): the run's record (or why it is
unreadable), whether a live process holds its lease, whether an epoch checkpoint exists, the Slurm
state of the job the manifest names for it, why a finished record is stale, and its teachers' states.

States (:data:`STATES`), first rule that applies:

``unreadable``  its ``record.json`` cannot be read (a launch refuses until it is moved aside)
``finished``    the record says finished (``stale`` instead when its code or teacher changed since)
``diverged``    the record says diverged (stage, epoch, step, term): a result, not retried
``running``     a live process holds the run's lease, or its Slurm job is running
``queued``      its Slurm job is pending (with Slurm's reason) or requeued
``failed``      the record says failed (its error line), or its job ended FAILED / out of memory /
                boot failure before writing any record
``interrupted`` the record says running or interrupted (or only a checkpoint exists) and nothing holds
                the run: killed, preempted, node lost, time-limited — resumable
``not started`` none of the above
``blocked``     not started, interrupted or failed, and a teacher run it needs is failed, diverged,
                blocked or unreadable (``blocked_by`` names those teachers; ``base`` keeps its own state)

Actions of a launch (:func:`launch_action`): ``skip`` (finished; diverged and stale unless rerun),
``wait`` (queued or running: never submitted twice), ``hold`` (failed unless ``--rerun-failed``;
unreadable), ``submit`` (not started; failed, diverged, stale when asked), ``resume`` (interrupted,
from its last checkpoint), ``blocked`` (a teacher it needs will not be there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple

NOT_STARTED, QUEUED, RUNNING, INTERRUPTED = "not started", "queued", "running", "interrupted"
FINISHED, DIVERGED, FAILED, BLOCKED, STALE, UNREADABLE = "finished", "diverged", "failed", "blocked", "stale", "unreadable"
STATES = (NOT_STARTED, QUEUED, RUNNING, INTERRUPTED, FINISHED, DIVERGED, FAILED, BLOCKED, STALE, UNREADABLE)
# a teacher in one of these states will not produce the record its students need
DEAD = (FAILED, DIVERGED, BLOCKED, UNREADABLE)
# states a launch can be asked to rerun (--rerun-failed, --rerun-diverged, --rerun-stale)
RERUNNABLE = (FAILED, DIVERGED, STALE)

SKIP, WAIT, HOLD, SUBMIT, RESUME, BLOCK = "skip", "wait", "hold", "submit", "resume", "blocked"
ACTIONS = (SKIP, WAIT, HOLD, SUBMIT, RESUME, BLOCK)

# Slurm job states (squeue / sacct)
IN_FLIGHT = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
             "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}
RUNNING_JOB = {"RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
# a job that ended in one of these without writing a record failed before the run started
FAILED_STATES = {"FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "NODE_FAIL"}
NEVER = "DependencyNeverSatisfied"


@dataclass(frozen=True)
class RunState:
    state: str
    detail: str = ""
    base: str = ""                            # blocked: the run's own state (not started, interrupted, failed)
    blocked_by: Tuple[str, ...] = field(default=())  # blocked: labels of the teacher runs that block it
    job: str = ""                             # queued / running: the Slurm job (array task) id doing it, if known

    @property
    def own(self) -> str:
        """The run's own state, ignoring its teachers."""
        return self.base or self.state


@dataclass(frozen=True)
class Action:
    verb: str
    why: str = ""


def divergence_text(div: Optional[Mapping[str, Any]]) -> str:
    d = dict(div or {})
    where = ", ".join(f"{k} {d[k]}" for k in ("stage", "epoch", "step") if d.get(k) is not None)
    return f"{d.get('what', 'non-finite values')}" + (f" ({where})" if where else "")


def run_state(record: Optional[Mapping[str, Any]], *, unreadable: Optional[str] = None, lease_held: bool = False,
              holder: str = "", checkpoint: bool = False, job: Optional[Mapping[str, str]] = None,
              stale: Optional[str] = None, teachers: Sequence[Tuple[str, RunState]] = ()) -> RunState:
    """The state of one run (see the module's table). ``job``: ``{"job_id", "state", "reason"}`` of the
    Slurm job the launch manifest names for it (None without one or when Slurm no longer knows it);
    ``teachers``: ``(label, state)`` of the runs of this grid it needs."""
    if unreadable:
        return RunState(UNREADABLE, unreadable)
    rec = dict(record or {})
    status = rec.get("status") if record is not None else None
    if status == FINISHED:
        if stale:
            return RunState(STALE, stale)
        stale_t = [label for label, t in teachers if t.state == STALE]
        if stale_t:
            return RunState(STALE, f"its teacher {', '.join(stale_t)} is stale and will be retrained")
        top1 = (rec.get("metrics") or {}).get("last_top1")
        return RunState(FINISHED, f"top-1 {top1:.2f}" if isinstance(top1, (int, float)) else "")
    if status == DIVERGED:
        return RunState(DIVERGED, divergence_text(rec.get("divergence")))
    jid = job.get("job_id", "?") if job else ""
    in_flight = bool(job and job.get("state") in IN_FLIGHT and job.get("reason") != NEVER)
    if lease_held:
        return RunState(RUNNING, f"training ({holder})" if holder else "training (its lease is held)",
                        job=jid if in_flight else "")
    if in_flight and job is not None:
        reason = job.get("reason") or ""
        reason = "" if reason in ("None", "") else f" ({reason})"
        if job["state"] in RUNNING_JOB:
            return RunState(RUNNING, f"job {jid} {job['state'].lower()}{reason}", job=jid)
        return RunState(QUEUED, f"job {jid} {job['state'].lower()}{reason}", job=jid)
    own = _own_state(rec, status, checkpoint, job, jid)
    dead = [(label, t) for label, t in teachers if t.state in DEAD]
    if dead:
        why = "; ".join(f"teacher {label} {t.state}" + (f" ({t.detail})" if t.detail else "") for label, t in dead)
        return RunState(BLOCKED, f"by {', '.join(label for label, _ in dead)}: {why}", base=own.state,
                        blocked_by=tuple(label for label, _ in dead))
    return own


def _own_state(rec, status, checkpoint: bool, job, jid: str) -> RunState:
    ended = f"; its job {jid} ended {job['state']}" if job and job.get("state") else ""
    if status == FAILED:
        return RunState(FAILED, (rec.get("error") or "no error recorded") + ended)
    resume = "resumes from its last checkpoint" if checkpoint else "no checkpoint yet: starts again"
    if status in ("running", INTERRUPTED):
        why = rec.get("error") if status == INTERRUPTED and rec.get("error") else "its process ended while it trained"
        return RunState(INTERRUPTED, f"{why}{ended}; {resume}")
    if checkpoint:
        return RunState(INTERRUPTED, f"a checkpoint but no record{ended}; {resume}")
    if job and job.get("state") in FAILED_STATES:
        reason = job.get("reason") or ""
        return RunState(FAILED, f"its job {jid} ended {job['state']}" + (f" ({reason})" if reason not in ("", "None") else "")
                        + " before writing a record")
    return RunState(NOT_STARTED, "")


FLAG = {FAILED: "--rerun-failed", DIVERGED: "--rerun-diverged", STALE: "--rerun-stale"}


def launch_action(st: RunState, rerun: Iterable[str] = (), teachers: Sequence[Tuple[str, RunState, Action]] = (),
                  teacher_ready=None) -> Action:
    """What a launch does with a run in state ``st``. ``rerun``: the states it was asked to rerun
    (``failed``, ``diverged``, ``stale``); ``teachers``: ``(label, state, action)`` of the runs it needs, whose
    actions were decided first. A teacher is there for its student when it is finished (or stale and
    kept), or — by default — when this launch submits or resumes it, or waits for its Slurm job; ``teacher_ready(state,
    action)`` replaces that test (the local executor, which runs a teacher's stage before its students',
    asks for a finished record)."""
    rerun = set(rerun)
    own = st.own
    if own == FINISHED:
        return Action(SKIP, "finished")
    if own in (DIVERGED, STALE) and own not in rerun:
        return Action(SKIP, f"{own}: kept ({st.detail}); {FLAG[own]} reruns it")
    if own in (RUNNING, QUEUED):
        return Action(WAIT, f"{st.detail}; not submitted again")
    if own == UNREADABLE:
        return Action(HOLD, st.detail)
    ready = teacher_ready or _teacher_ready
    missing = [(label, t, a) for label, t, a in teachers if not ready(t, a)]
    if missing:
        why = "; ".join(f"{label} {t.state}" + (f" ({t.detail})" if t.detail else "") for label, t, _a in missing)
        flags = sorted({FLAG[t.own] for _l, t, _a in missing if t.own in FLAG})
        hint = f" (relaunch with {' '.join(flags)} to rerun the teacher and then this run)" if flags else ""
        return Action(BLOCK, f"blocked by {', '.join(label for label, _t, _a in missing)}: teacher {why}{hint}")
    if own == FAILED and FAILED not in rerun:
        return Action(HOLD, f"failed — {st.detail}; not resubmitted (relaunch with --rerun-failed)")
    if own == INTERRUPTED:
        return Action(RESUME, st.detail)
    if own in RERUNNABLE:
        return Action(SUBMIT, f"{own}, rerun as asked ({st.detail})")
    return Action(SUBMIT, "not started")


def _teacher_ready(t: RunState, a: Action) -> bool:
    """Submitted or resumed by this launch, queued / running in a Slurm job its students can wait for (not
    a process outside Slurm holding its lease), or finished."""
    return a.verb in (SUBMIT, RESUME) or (a.verb == WAIT and bool(t.job)) or (a.verb == SKIP and t.own in (FINISHED, STALE))


def finished_ready(t: RunState, a: Action) -> bool:
    """A teacher is there only when its record is finished (or stale and kept): the local executor's test."""
    return t.own in (FINISHED, STALE) and a.verb == SKIP
