"""``crd``: contrastive representation distillation.

Paper: Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020 (arXiv 1910.10699),
§3.1–3.4. Embedding heads g_S, g_T (linear + ℓ2 normalisation, ``feat_dim`` 128) map the pooled
features of student and teacher; the critic is
    h(T, S) = exp(g_T(t)ᵀg_S(s)/τ) / (exp(g_T(t)ᵀg_S(s)/τ) + N/M),
with M the training-set size and N the number of negatives (``nce_k``), and the student maximises
the NCE bound on the mutual information (the paper's L_critic, implemented as its NCE loss):
    L_NCE = −E_pos[log h] − N·E_neg[log(1 − h)],
where, as in the paper's memory-bank implementation (after Wu et al. 2018), exp(·/τ) is divided by a
normalisation constant Z (estimated once, from the first batch: Z = M · mean exp(·/τ)) so that it
approximates a probability P, and h = P / (P + N/M). Negatives come from memory banks of size M × 128
(registered buffers; initialised uniformly in ±1/√(feat_dim/3)): for each sample the positive is its
own row (the dataset index from the loader, ``batch_fields`` "index") and N rows drawn uniformly.
The loss is taken both ways — the student anchor against the teacher bank and the teacher anchor
against the student bank — and after each step the batch's rows are updated with momentum m = 0.5:
    bank[i] ← normalise(m·bank[i] + (1 − m)·v_i).
L = CE + β·(L_NCE^S + L_NCE^T), β = 0.8, τ = 0.07, N = 16384 (RepDistiller's CIFAR-100 defaults, no KD).

Reference code (github.com/HobbitLong/RepDistiller): the loss and the banks follow ``crd/criterion.py``
(``CRDLoss``, ``ContrastLoss``, ``Embed``) and ``crd/memory.py`` (``ContrastMemory``). The negatives
follow its CIFAR-100 data sampler, ``dataset/cifar100.py::CIFAR100InstanceSample`` with
``train_student.py``'s defaults (``mode='exact'``, ``is_sample=True``, ``percent=1.0``,
k = ``nce_k``). ``sampling`` chooses:

- ``exact`` (default): the positive is the sample's own row; its N negatives are drawn from the
  samples of OTHER classes (RepDistiller's ``cls_negative[target]``), without replacement
  (``np.random.choice(..., replace=False)``) unless N exceeds that pool, then with replacement.
  ``neg_replacement: true`` draws with replacement always — RepDistiller's ImageNet sampler
  (``dataset/imagenet.py::ImageFolderSample``) does, and it needs B×N instead of B×(training set)
  memory; each negative is then still uniform over the pool, so the expected loss is the same.
- ``relax``: as ``exact``, but the positive row is a random sample of the same class (RepDistiller's
  ``mode='relax'``); the bank update still goes to the sample's own row.
- ``uniform``: N negatives uniform over the whole training set, with replacement (the noise
  distribution the NCE derivation assumes; may include the anchor's class and the anchor itself).

The class-aware modes need every training sample's label (``BuildContext.train_labels``, from the
data pipeline); the draws are batched tensor ops (masked random keys / index arithmetic over the
samples sorted by class), with no per-sample Python.
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.components.memory_banks import add_memory_banks, update_memory_banks
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand

SAMPLING = ("exact", "relax", "uniform")
# rows of the (rows × training set) sampling weights handled at once in the without-replacement draw
_DRAW_ELEMENTS = 1 << 24


def nce_loss(p: torch.Tensor, num_data: int, eps: float = 1e-7) -> torch.Tensor:
    """``p`` (B, 1 + N): normalised scores, column 0 the positive. −(Σ log h⁺ + Σ log(1 − h⁻)) / B."""
    b, n = p.shape[0], p.shape[1] - 1
    noise = n / float(num_data)
    log_pos = torch.log(p[:, 0] / (p[:, 0] + noise + eps))
    log_neg = torch.log(noise / (p[:, 1:] + noise + eps))
    return -(log_pos.sum() + log_neg.sum()) / b


@register_method
class CRD(Distiller):
    name = "crd"
    display_name = "CRD"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "feature"
    scheme = "offline"
    paper = "Tian et al. 2020, Contrastive Representation Distillation (ICLR)"
    equation = "CE + β·(NCE(g_S(s) vs teacher bank) + NCE(g_T(t) vs student bank)), h = P/(P + N/M)"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): crd 3.79 (17.9 / 4.73)
    scale_band = {"crd": ScaleBand.around(3.79, "beta")}
    hparams = {"beta": HParam(0.8, low=0.0, doc="weight of the contrastive term"),
               "feat_dim": HParam(128, low=1, doc="embedding dimension"),
               "nce_k": HParam(16384, low=1, doc="negatives per sample"),
               "nce_t": HParam(0.07, low=0.0, low_open=True, doc="temperature τ"),
               "nce_m": HParam(0.5, low=0.0, high=1.0, doc="momentum of the memory-bank update"),
               "sampling": HParam("exact", choices=SAMPLING,
                                  doc="exact: negatives from other classes (RepDistiller's CIFAR-100 default); "
                                      "relax: same, positive a random same-class sample; uniform: whole set"),
               "neg_replacement": HParam(False, doc="class-aware modes: draw negatives with replacement "
                                                    "(RepDistiller's ImageNet sampler); false: without, as on CIFAR-100")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)
    batch_fields = ("x", "y", "index")
    smoke_hparams = {"nce_k": 64}
    below_num_train = {"nce_k": "its negatives are rows of memory banks with one row per training sample, so more "
                                "would repeat rows, at a cost of batch × (1 + nce_k) × feat_dim values gathered per "
                                "bank each step (RepDistiller's 16384 is for CIFAR-100's 50,000 images)"}

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.embed_s = nn.Linear(self.student_shapes()["pool"][0], hp.feat_dim)
        self.embed_t = nn.Linear(self.teacher_shapes()["pool"][0], hp.feat_dim)
        self.num_data = add_memory_banks(self, "crd", ctx.num_train, hp.feat_dim)
        self.register_buffer("z_s", torch.tensor(-1.0))  # normalisation constants, set from the first batch
        self.register_buffer("z_t", torch.tensor(-1.0))
        if hp.sampling != "uniform":
            self._index_classes(ctx.train_labels)

    def _index_classes(self, labels) -> None:
        """Samples sorted by class (``by_class``), each class's first position and size: the other-class
        pool of class c is ``by_class`` without the block [start[c], start[c] + count[c])."""
        if labels is None:
            raise ConfigError(f"method 'crd': hparams.sampling = {self.hp.sampling!r} draws negatives from other "
                              f"classes and needs every training sample's label, which this data pipeline does "
                              f"not provide; use sampling: uniform")
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if len(labels) != self.num_data:
            raise ConfigError(f"method 'crd': {len(labels)} training labels for num_train = {self.num_data}")
        counts = torch.bincount(labels)
        pool = self.num_data - counts
        present = counts > 0
        if (pool[present] <= 0).any():
            raise ConfigError(f"method 'crd': hparams.sampling = {self.hp.sampling!r} needs samples of at least two "
                              f"classes; the training set has one")
        # which classes' pools are too small for N distinct draws (RepDistiller then draws with replacement)
        short = present & (pool < self.hp.nce_k)
        self._with_replacement = "all" if self.hp.neg_replacement or bool(short[present].all()) \
            else ("some" if bool(short.any()) else "none")
        if self._with_replacement == "some":
            # stands in for the short classes' rows in the without-replacement draw, whose result they discard
            self._a_long_class = int(torch.nonzero(present & ~short)[0])
        # derived from the data, not state: not saved in checkpoints
        self.register_buffer("train_labels", labels, persistent=False)
        self.register_buffer("by_class", torch.argsort(labels, stable=True), persistent=False)
        self.register_buffer("class_start", torch.cumsum(counts, 0) - counts, persistent=False)
        self.register_buffer("class_count", counts, persistent=False)
        self.register_buffer("class_short", short, persistent=False)

    def _other_class_with_replacement(self, y: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k) indices uniform over each anchor's other-class pool: a position r in [0, pool) skips
        the anchor's class block in the class-sorted order."""
        start, count = self.class_start[y].unsqueeze(1), self.class_count[y].unsqueeze(1)
        pool = self.num_data - count
        u = torch.rand(len(y), k, device=y.device, dtype=torch.float64)
        r = torch.minimum((u * pool).long(), pool - 1)
        return self.by_class[r + (r >= start).long() * count]

    def _other_class_without_replacement(self, y: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k) distinct indices per row, uniform over each anchor's other-class pool: the k smallest of
        i.i.d. uniform keys (a random ordering of the pool) with the anchor's own class keyed out of
        reach; in chunks of rows that bound the (rows × training set) key matrix. Tensor ops only (no
        host sync, unlike torch.multinomial's input check)."""
        rows = max(1, _DRAW_ELEMENTS // self.num_data)
        out = []
        for y_chunk in y.split(rows):
            keys = torch.rand(len(y_chunk), self.num_data, device=y.device, dtype=torch.float64)
            keys.masked_fill_(self.train_labels.unsqueeze(0) == y_chunk.unsqueeze(1), 2.0)
            out.append(keys.topk(k, dim=1, largest=False, sorted=False).indices)
        return torch.cat(out)

    def contrast_indices(self, index: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N) bank rows scored for each sample: column 0 the positive, then N negatives."""
        k, b = self.hp.nce_k, len(index)
        if self.hp.sampling == "uniform":
            neg = torch.randint(0, self.num_data, (b, k), device=index.device)
            return torch.cat([index.view(-1, 1), neg], dim=1)
        y = self.train_labels[index]  # the dataset's labels (the batch's own may be soft or mixed)
        if self._with_replacement == "all":
            neg = self._other_class_with_replacement(y, k)
        elif self._with_replacement == "none":
            neg = self._other_class_without_replacement(y, k)
        else:  # rows of classes with a pool smaller than N: with replacement, as numpy's choice must
            short = self.class_short[y].unsqueeze(1)
            safe_y = torch.where(short.squeeze(1), self._a_long_class, y)
            neg = torch.where(short, self._other_class_with_replacement(y, k),
                              self._other_class_without_replacement(safe_y, k))
        if self.hp.sampling == "relax":
            u = torch.rand(b, device=index.device, dtype=torch.float64)
            count = self.class_count[y]
            pos = self.by_class[self.class_start[y] + torch.minimum((u * count).long(), count - 1)]
        else:
            pos = index
        return torch.cat([pos.view(-1, 1), neg], dim=1)

    def _normalised(self, scores: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = torch.exp(scores / self.hp.nce_t)
        z.copy_(torch.where(z < 0, out.detach().mean() * self.num_data, z))
        return out / z

    def contrast_loss(self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor,
                      contrast_index: torch.Tensor) -> torch.Tensor:
        """Both NCE losses for ℓ2-normalised embeddings ``v_s``/``v_t`` (B, d) and the bank rows
        ``contrast_index`` (B, 1 + N), column 0 the positive; then the momentum update of the batch's own
        rows ``index``."""
        w_t = self.memory_t[contrast_index]  # (B, 1 + N, d), a copy: the banks carry no gradient
        w_s = self.memory_s[contrast_index]
        # the NCE terms in float64: each negative's log(1 − h) is ~1e-4 and float32 rounds h's complement
        # near 1, which shifts the sum over 16384 negatives by ~1e-3 relative (cheap: B × (1 + N) values)
        p_s = self._normalised(torch.bmm(w_t, v_s.unsqueeze(2)).squeeze(2).double(), self.z_s)  # student anchor
        p_t = self._normalised(torch.bmm(w_s, v_t.unsqueeze(2)).squeeze(2).double(), self.z_t)  # teacher anchor
        loss = (nce_loss(p_s, self.num_data) + nce_loss(p_t, self.num_data)).float()
        update_memory_banks(self, index, v_s, v_t, self.hp.nce_m)
        return loss

    def forward_train(self, x, y):
        index = self.batch_extras.get("index")
        if index is None:
            raise ConfigError("method 'crd' needs each sample's dataset index: its batches must carry the 'index' "
                              "field (batch_fields = ('x', 'y', 'index'))")
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        v_s = F.normalize(self.embed_s(sf["pool"]).float(), dim=1)
        v_t = F.normalize(self.embed_t(tf["pool"]).float(), dim=1)
        contrast_index = self.contrast_indices(index, y)
        return {"ce": losses.ce(s_logits, y),
                "crd": self.hp.beta * self.contrast_loss(v_s, v_t, index, contrast_index)}
