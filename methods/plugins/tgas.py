"""``tgas``: a search candidate scored by how much its representations resemble the teacher's (§5.9).

Paper: Bashivan, Tensen & DiCarlo, "Teacher Guided Architecture Search", ICCV 2019 (arXiv 1808.01405),
§3 (TG-SAGE): after a short training the candidate is ranked not by its (premature) accuracy but by the
similarity of its internal representations to a high-performing teacher's. For N validation images each
stage's representational dissimilarity matrix is RDM_ij = 1 − corr(a_i, a_j); the score is the mean over
paired stages of corr(upper(RDM_student), upper(RDM_teacher)). The authors released no code; the default
follows the paper (Pearson correlation of the RDMs; ``rank=True`` uses Spearman's instead).
The proxy training is plain cross-entropy — the teacher guides the choice, not the candidate's training.
Stages are paired by position (student's i-th stage with the teacher's i-th).
"""
from __future__ import annotations

from kdsuite.methods import losses
from kdsuite.methods.components.search import (SCORE, SearchProxy, rdm, rdm_similarity, stage_features,
                                               validation_batches)
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


@register_method
class TGAS(SearchProxy):
    name = "tgas"
    display_name = "TG-SAGE"
    scheme = "offline"
    paper = "Bashivan et al. 2019, Teacher Guided Architecture Search (ICCV)"
    equation = "proxy: CE; score = mean_stages corr(upper(RDM_s), upper(RDM_t)), RDM_ij = 1 − corr(a_i, a_j)"
    hparams = {
        "images": HParam(500, low=3, doc="validation images the RDMs are computed on (the paper: a fixed set)"),
        "rank": HParam(False, doc="compare RDMs by Spearman's rank correlation instead of Pearson's"),
    }
    student_taps = ("stages",)
    teacher_taps = ("stages",)
    distill_terms = ("ce",)  # the teacher guides the choice of architecture, not the candidate's training

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.require_paired_stages()

    def forward_train(self, x, y):
        return {"ce": losses.ce(self.student(x), y)}

    def search_score(self, parts):
        s, t = stage_features(self, validation_batches(parts, self.name), self.hp.images)
        sims = [rdm_similarity(rdm(a), rdm(b), rank=self.hp.rank) for a, b in zip(s, t)]
        return {SCORE: sum(sims) / len(sims), "search_stage_similarity": sims, "search_images": len(s[0])}
