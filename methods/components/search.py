"""Teacher-guided architecture search (survey §5.9): the score a search candidate leaves in its record.

Role in the flow: a search is a grid stage of candidate runs — one per (architecture, seed), each a short
*proxy* training by a ``nas`` method (``nas_kd``, ``tgas``). When a candidate finishes, its method's
:meth:`SearchProxy.record_metrics` writes ``metrics.search_score`` (higher is better), measured on the
validation split, never on test. A later stage names the search as its student (``student: {search:
STAGE}``); :mod:`kdsuite.experiments.search` reads the candidates' scores when that run starts, picks the
architecture with the best mean score and trains it fully.

Representational similarity (TG-SAGE, Bashivan et al. ICCV 2019, §3): for N images, a layer's
representational dissimilarity matrix is RDM_ij = 1 − corr(a_i, a_j) (Pearson correlation of the two
images' flattened activations); two layers are as similar as their RDMs, measured by the Pearson
correlation of the RDMs' upper triangles (``spearman``: of their ranks).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

import torch

from kdsuite.core.errors import ConfigError
from kdsuite.methods.base import Distiller

SCORE = "search_score"


def rdm(acts: torch.Tensor) -> torch.Tensor:
    """(N, N) dissimilarity 1 − Pearson correlation between the rows of ``acts`` (N, ...)."""
    a = acts.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return 1.0 - a @ a.t()


def _ranks(v: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(v)
    out[v.argsort()] = torch.arange(len(v), dtype=v.dtype, device=v.device)
    return out


def rdm_similarity(a: torch.Tensor, b: torch.Tensor, rank: bool = False) -> float:
    """Pearson (``rank``: Spearman, ties broken by order) correlation of the upper triangles of two RDMs."""
    iu = torch.triu_indices(len(a), len(a), offset=1)
    x, y = a[iu[0], iu[1]], b[iu[0], iu[1]]
    if rank:
        x, y = _ranks(x), _ranks(y)
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / (x.norm() * y.norm()).clamp_min(1e-12))


def validation_batches(parts, method: str) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
    """The validation split a candidate is scored on; a run without one cannot be scored honestly."""
    loader = parts.data.validation
    if loader is None:
        raise ConfigError(f"method '{method}': a search candidate is scored on the validation split, and this run "
                          f"has none (dataset.val_fraction = 0); set dataset.val_fraction > 0")
    for batch in loader:
        yield batch[0].to(parts.device), batch[1].to(parts.device)


class SearchProxy(Distiller):
    """Shared by the NAS-based methods: the proxy training is the method's loss; its score, computed once
    the candidate has finished, lands in ``metrics.search_score`` (and its parts beside it)."""
    category = "nas"

    def search_score(self, parts) -> Dict[str, float]:
        """``{"search_score": float, ...}`` of the trained candidate, measured on the validation split."""
        raise NotImplementedError

    def record_metrics(self, parts) -> Dict[str, float]:
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self.search_score(parts)
        finally:
            self.train(was)
        if not isinstance(out.get(SCORE), float):
            raise TypeError(f"method '{self.name}': search_score() must return a float '{SCORE}', got {out!r}")
        return out


def accuracy(model: torch.nn.Module, batches) -> Tuple[float, int]:
    """Top-1 (%) of ``model`` over ``batches`` and the number of images."""
    hits = n = 0
    for x, y in batches:
        hits += int((model(x).argmax(1) == y).sum())
        n += len(y)
    return 100.0 * hits / max(n, 1), n


def stage_features(method: Distiller, batches, limit: int) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Student and teacher activations at each paired tap, for the first ``limit`` validation images."""
    s_acts: Dict[str, List[torch.Tensor]] = {}
    t_acts: Dict[str, List[torch.Tensor]] = {}
    seen = 0
    for x, _ in batches:
        x = x[: limit - seen]
        _, sf = method.student_forward(x)
        _, tf = method.teacher_forward(x)
        for k in method.s_taps:
            s_acts.setdefault(k, []).append(sf[k].flatten(1).double().cpu())
        for k in method.t_taps[0]:
            t_acts.setdefault(k, []).append(tf[k].flatten(1).double().cpu())
        seen += len(x)
        if seen >= limit:
            break
    return ([torch.cat(s_acts[k]) for k in method.s_taps], [torch.cat(t_acts[k]) for k in method.t_taps[0]])
