"""One backward pass of training's loss shapes, sharded over torchrun ranks vs whole in one process:
``torchrun --nproc_per_node 2 tests/ddp_grad_check.py OUT.json`` (tests/test_train_ddp.py).

Every rank computes the one-process gradients of a critic's WGAN loss + gradient penalty (double backward
through the sharded critic) and a student's cross-entropy + pairwise L_be (which couples the batch's samples),
on an odd batch (shares of 6 and 5 rows); then the same with the networks sharded (distributed.attach) and
the gradients averaged. Rank 0 writes the largest relative difference, and the one without the averaging
(each rank's own share only), which must be far off.
"""
import copy
import json
import sys
from pathlib import Path

import torch

from dkgzsl_app.models import losses as L
from dkgzsl_app.models.networks import Critic, EmbeddingClassifier
from dkgzsl_app.trainer import distributed


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.critic = Critic(5, 16, 8)
        self.student = EmbeddingClassifier(8, 6, 4)


class Trainer:
    optimizer_names = ()

    def __init__(self, model):
        self.model = model


def loss(m: Model) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)  # the penalty's interpolation weights: one stream for the batch
    x, fake, a = (torch.randn(11, 8, generator=gen), torch.randn(11, 8, generator=gen),
                  torch.randn(11, 5, generator=gen))
    y = torch.randint(0, 4, (11,), generator=gen)
    d = m.critic(fake, a).mean() - m.critic(x, a).mean()
    gp = L.gradient_penalty(m.critic, x, fake, a, gen)
    e, z = m.student(x)
    with torch.no_grad():
        anchor = torch.randn(11, 6, generator=gen)
    return d + 10 * gp + L.cls_loss(z, y) + L.be_loss(anchor, e, y)


def grads(m: Model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in m.parameters()]


def main(out: Path) -> None:
    distributed.init("cpu")
    torch.manual_seed(0)
    whole = Model()
    sharded = copy.deepcopy(whole)
    loss(whole).backward()
    ref = grads(whole)

    hooks = distributed.attach(Trainer(sharded))
    loss(sharded).backward()
    own = grads(sharded)  # this rank's share (× N), before averaging
    distributed.average_gradients(list(sharded.parameters()))
    got = grads(sharded)
    hooks.detach()

    def rel(a, b):
        return max(float((x - y).norm() / x.norm().clamp_min(1e-12)) for x, y in zip(a, b))

    if distributed.is_main():
        out.write_text(json.dumps({"averaged": rel(ref, got), "own_share": rel(ref, own)}))
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
