"""The scale band of a method's loss terms: the range of term / CE at a run's first step in which the
method was calibrated.

Role in the flow: a plugin states, per distillation term, the ratio of that term to its cross-entropy
measured at its reference recipe (``tests/test_parity_scale.py``: the real CIFAR-100 pair resnet32x4 →
resnet8x4 at initialisation) as ``scale_band = {"at": ScaleBand.around(0.51, "beta")}``; the trainer's
scale check (:mod:`kdsuite.engine.scale_check`) reads the step-0 losses of a run, divides each term by
the ``ce`` term (as weighted by the method, i.e. as the trainer sums it) and warns when the ratio leaves
the band. A term a method does not state gets the suite-wide band of ``test_parity_scale``: a term
below 1e-3 of CE does nothing for the first epochs, one above 1e3 swamps it (1e-4 for online and
self-distillation, whose terms start near zero between two untrained networks).
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional, Sequence

# how far a run's ratio may be from the reference recipe's before it is said to be another scale
AROUND = 10.0
DEFAULT_BAND = (1e-3, 1e3)
UNTRAINED_PARTNER_BAND = (1e-4, 1e3)
# the kit's label terms by name (kdsuite.testing.is_label_term): they fit the labels, not a teacher
_LABEL_RE = re.compile(r"ce|bce|ce_\w+|ce\d\w*")


class ScaleBand(NamedTuple):
    """Where term / CE at step 0 is expected: ``lo < |ratio| < hi``; ``weight`` names the
    hyper-parameter that weights the term (the warning's hint); ``reference`` the ratio the band was
    derived from (None for the suite-wide default)."""
    lo: float
    hi: float
    weight: Optional[str] = None
    reference: Optional[float] = None

    @classmethod
    def around(cls, reference: float, weight: Optional[str] = None) -> "ScaleBand":
        """One decade either side of the ratio ``reference`` measured at the method's reference recipe."""
        # 6 significant digits: 0.51 / 10 is recorded as 0.051, not 0.051000000000000004
        return cls(float(f"{reference / AROUND:.6g}"), float(f"{reference * AROUND:.6g}"), weight, reference)

    def holds(self, ratio: float) -> bool:
        return self.lo < abs(ratio) < self.hi


def band_of(cls, key: str) -> ScaleBand:
    """The band of loss term ``key`` of method class ``cls`` (``stage/term`` keys look up the stage's
    entry first, then the term's): the plugin's own ``scale_band`` entry, else the suite-wide band."""
    own = getattr(cls, "scale_band", {}) or {}
    term = key.rsplit("/", 1)[-1]
    if key in own:
        return own[key]
    if term in own:
        return own[term]
    lo, hi = UNTRAINED_PARTNER_BAND if getattr(cls, "scheme", "") in ("online", "self") else DEFAULT_BAND
    return ScaleBand(lo, hi)


def checked_terms(cls, keys: Sequence[str]) -> list:
    """The loss keys the check compares with CE: every key but the label terms (``label_terms``, else
    ``ce``, ``bce``, ``ce_*``, ``ce0`` …) and the terms of other players (``scale_exempt``)."""
    own = getattr(cls, "label_terms", None)
    exempt = set(getattr(cls, "scale_exempt", ()) or ())

    def label(k: str) -> bool:
        return k in own if own is not None else bool(_LABEL_RE.fullmatch(k))
    return [k for k in keys if k != "ce" and not label(k) and k not in exempt]
