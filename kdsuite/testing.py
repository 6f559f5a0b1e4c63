"""The plugin authors' kit: build a plugin around tiny zoo models, train (and cache) tiny digits teachers,
and run the contract every registered method meets — the same checks as the suite's own
``tests/test_method_contract.py`` and ``kdsuite check-method NAME``:

- :func:`check_gradients`: finite losses; after one step of the final stage every parameter of the active
  optimizer groups has a gradient, every other parameter is unchanged, frozen teachers neither receive
  gradients nor change (catches a NaN term, a module left out of the optimizer);
- :func:`check_term_gradients`: each distillation term *on its own* reaches the student's parameters and no
  teacher's (catches a term detached from the student, a dropped term; the summed loss hides both, as its
  CE alone reaches every parameter);
- :func:`check_toward_teacher`: with the label terms off, a few dozen steps lower the method's discrepancy
  to its teacher (KL of predictions on held-out batches, or its own terms on fresh ones) against the
  untouched student (catches a sign flip: a negated term "falls" while the student moves away);
- :func:`check_deployed`: a short run through every stage finishes, ``eval_models()["student"]`` is the
  deployed student, the recorded top-1 is that model's, and every module it runs is in its parameter count
  and its export (catches the wrong model evaluated, a borrowed part left out of the count or export);
- :func:`check_adversary` (min-max methods): the adversary alone raises the student's terms, and against the
  adversary held fixed the student's objective falls (catches a reversal or a sign removed);
- :func:`check_resume`: a checkpoint/resume round trip (through the safe loader) reproduces the next step
  exactly, every optimizer, peer, generator and discriminator included.

:func:`run_checks` runs them all; a check that raises anything fails with that message (the later checks still
run), a check that does not apply says why (``skip``). Each check raises ``AssertionError`` with the method's name and what failed.

The kit lives in :mod:`kdsuite.kit` (fixtures, probes, checks, runner); this module is its one public name
and re-exports all of it.
"""
from kdsuite.kit.checks import (_check_against_fixed_adversary, check_adversary, check_deployed,  # noqa: F401
                                check_gradients, check_learning, check_resume, check_term_gradients,
                                check_toward_teacher)
from kdsuite.kit.fixtures import (CROSS_MODAL_VIEWS, TEACHER_ARCHS, _state, batches, build_parts,  # noqa: F401
                                  contract_config, default_cache, digits_teachers, make, registered,
                                  run_data_free, stage_step, step)
from kdsuite.kit.probes import (_LABEL_RE, CheckSkipped, _enter_distilling_stage, _groups, _held_out,  # noqa: F401
                                _no_terms, _nonzero, _patched_optimize, _teacher_kl, _terms_value,
                                distillation_terms, is_label_term)
from kdsuite.kit.runner import CHECKS, check_method, run_checks  # noqa: F401

__all__ = ["CHECKS", "CROSS_MODAL_VIEWS", "TEACHER_ARCHS", "CheckSkipped", "batches", "build_parts",
           "check_adversary", "check_deployed", "check_gradients", "check_learning", "check_method",
           "check_resume", "check_term_gradients", "check_toward_teacher", "contract_config", "default_cache",
           "digits_teachers", "distillation_terms", "is_label_term", "make", "registered", "run_checks",
           "run_data_free", "stage_step", "step"]
