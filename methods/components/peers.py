"""Shared machinery of online methods whose peers learn together (DML, KDCL)."""
from __future__ import annotations

import torch.nn as nn

from kdsuite import zoo
from kdsuite.core.errors import ConfigError
from kdsuite.methods.base import Distiller, OptimGroup


class PeerGroup(Distiller):
    """Shared machinery of online methods with peer networks: peer 0 is the run's student, the
    others are built from ``hp.peers``; one optimizer group and one evaluated model per peer."""

    # no fixed teacher: the kit's "toward" check measures the discrepancy between the peers, their own
    # mutual terms (every peer's), on fresh batches
    check_discrepancy = "terms"

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if not hp.peers:
            raise ConfigError(f"method.hparams.peers = []: {self.name} needs at least one other peer "
                              f"(a list of architecture names)")
        self.others = nn.ModuleList([ctx.build_model(a) for a in hp.peers])

    def check_build(self) -> None:
        """Each peer takes the data's images (one safe forward, as the run does for student and teachers)."""
        super().check_build()
        for i, (arch, peer) in enumerate(zip(self.hp.peers, self.others)):
            zoo.check_input(peer, arch, self.ctx.input_shape, field=f"method.hparams.peers[{i}]")

    @property
    def peers(self):
        return [self.student, *self.others]

    def optim_groups(self):
        return {f"peer{k}": OptimGroup([p for p in m.parameters() if p.requires_grad])
                for k, m in enumerate(self.peers)}

    def eval_models(self):
        return {"student" if k == 0 else f"peer{k}": self.deployed_student() if k == 0 else p
                for k, p in enumerate(self.peers)}
