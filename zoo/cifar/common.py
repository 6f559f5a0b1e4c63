"""Shared skeleton of the CIFAR-style KD family: stem -> stages -> final -> pool -> fc.

Every model of the family (``kdsuite.zoo.cifar.*``) subclasses :class:`CifarNet` so that feature taps,
timm's ``forward_features`` / ``forward_head`` / ``forward_intermediates`` and the pre-activation
features that some methods (AB, FitNets variants) need all come from one place.

Layout contract for subclasses (set in ``__init__`` then call ``self._finish_init()``):
- ``self.stem``: module applied to the image (its output is feature 0);
- ``self.stages``: ``nn.ModuleList``; stage ``i`` (1-based in tap names) returns its *pre-activation*
  output when the stage ends in an activation, and ``self.stage_acts[i-1]`` applies that activation
  (``nn.Identity`` when the stage ends without one, e.g. linear bottlenecks);
- ``self.final``: applied after the last stage's activation and before pooling (``nn.Identity`` for
  most; BN+ReLU for pre-activation WRNs);
- ``self.fc``: the classifier on the pooled vector of size ``self.num_features``.
Subclasses whose "pre-activation" is not simply "before the stage's trailing ReLU" (pre-act WRN)
override :meth:`preact_of`.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn


def init_weights(model: nn.Module, linear_std: Optional[float] = None, zero_linear_bias: bool = False) -> None:
    """The reference models' initialisation: convolutions He-normal over fan-out (std √(2/(k²·C_out)),
    biases 0), batch norms 1 / 0, and, where the reference does, a N(0, linear_std) classifier and/or
    a zero classifier bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0, linear_std)
            if linear_std is not None or zero_linear_bias:
                nn.init.zeros_(m.bias)


class CifarNet(nn.Module):
    """Base class; see the module docstring for the layout contract."""

    stem: nn.Module
    stages: nn.ModuleList
    stage_acts: nn.ModuleList
    final: nn.Module
    fc: nn.Module
    num_features: int
    num_classes: int

    def _finish_init(self, stem_channels: int, stage_channels: Sequence[int], stage_reductions: Sequence[int]):
        """Record timm-style ``feature_info`` (stem + each stage) once the layers exist."""
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_info = [dict(num_chs=stem_channels, reduction=1, module="stem")]
        for i, (c, r) in enumerate(zip(stage_channels, stage_reductions)):
            self.feature_info.append(dict(num_chs=c, reduction=r, module=f"stages.{i}"))

    # ---- pre-activation hook -------------------------------------------------------------
    def preact_of(self, index: int, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        """Pre-activation version of feature ``index`` (0 = stem). Default: the stage's value before
        its trailing activation."""
        return pre

    # ---- the one traversal everything else uses ------------------------------------------
    def traverse(self, x: torch.Tensor, with_pre: bool = False, stop_at: Optional[int] = None):
        """Return ``(logits, post, pre, pooled)``: ``post[i]`` is feature ``i`` (0 = stem output,
        1..N = stages) after its activation, ``pre[i]`` before it (``None`` unless ``with_pre``).
        With ``stop_at=k`` the traversal stops after feature ``k``; logits/pooled are then ``None``
        (FitNets' hint stage trains only up to the guided layer)."""
        x = self.stem(x)
        post = [x]
        pre_list: Optional[List[torch.Tensor]] = [x] if with_pre else None
        if stop_at == 0:
            return None, post, pre_list, None
        for i, (stage, act) in enumerate(zip(self.stages, self.stage_acts)):
            pre = stage(x)
            x = act(pre)
            post.append(x)
            if with_pre:
                pre_list.append(self.preact_of(i + 1, pre, x))
            if stop_at is not None and i + 1 >= stop_at:
                return None, post, pre_list, None
        x = self.final(x)
        pooled = torch.flatten(self.pool(x), 1)
        return self.fc(pooled), post, pre_list, pooled

    def forward_taps(self, x: torch.Tensor, preact: bool = False,
                     stop_at: Optional[int] = None) -> Tuple[Optional[torch.Tensor], List[torch.Tensor], Optional[torch.Tensor]]:
        """``(logits, feats, pooled)`` with ``feats`` post-activation, or pre-activation if ``preact``."""
        logits, post, pre, pooled = self.traverse(x, with_pre=preact, stop_at=stop_at)
        return logits, (pre if preact else post), pooled

    # ---- timm-compatible API --------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage, act in zip(self.stages, self.stage_acts):
            x = act(stage(x))
        return self.final(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Union[int, Sequence[int], None] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """timm semantics: ``indices`` an int ``n`` takes the last ``n`` features, a list takes
        those positions of ``feature_info`` (negative from the end)."""
        n = len(self.feature_info)
        if indices is None:
            take = list(range(n))
        elif isinstance(indices, int):
            take = list(range(n - indices, n))
        else:
            take = [i % n for i in indices]
        logits, feats, _ = self.forward_taps(x, stop_at=max(take) if (stop_early or intermediates_only) else None)
        inter = [feats[i] for i in take]
        if intermediates_only:
            return inter
        final = self.forward_features(x) if logits is None else self.final(feats[-1])
        return final, inter

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
