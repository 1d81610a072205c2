"""One backward pass through the networks that issue 14's second round shards, whole in one process vs split
over torchrun ranks: ``torchrun --nproc_per_node 2 tests/ddp_shard_check.py OUT.json`` (tests/test_train_ddp.py).

* ``sovr_backbone``: a backbone being fine-tuned (``distributed.per_rank``, eval-mode BatchNorm) → its region
  maps → DKGZSL's SOVR (FDE + ARA, sharded by its forward hooks) → a linear classifier's cross-entropy on v
  plus ARA's attribute loss, on an odd batch of 7 photos (shares of 3 and 4);
* ``msdn``: MSDN's loss terms (trainer/msdn.py ``losses``: both sub-nets' CE and the JS distillation), the
  model's forward sharded (``shard_model``), on an odd batch of 11.

Every rank computes the one-process gradients (``distributed.whole``, no hooks), then the sharded ones,
averaged as the optimisers' step hooks do. Rank 0 writes each case's largest relative gradient difference per
tensor (tensors whose gradient is below 1e-6 of the largest are numerically zero and left out), and that of a
rank's own share alone (before the averaging), which must be far off.
"""
import copy
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import tiny_backbone  # noqa: E402
from dkgzsl_app.models.backbone import Backbone  # noqa: E402
from dkgzsl_app.models.sovr import SOVR, attribute_logits  # noqa: E402
from dkgzsl_app.models.methods.msdn import MSDNModel, Options  # noqa: E402
from dkgzsl_app.trainer import distributed  # noqa: E402
from dkgzsl_app.trainer.backbone_ft import PhotoSet  # noqa: E402
from dkgzsl_app.trainer.msdn import js_divergence  # noqa: E402


class Head(torch.nn.Module):
    def __init__(self, dim: int, attrs: int, classes: int):
        super().__init__()
        self.sovr = SOVR(dim, attrs, attn_dim=8)
        self.linear = torch.nn.Linear(dim, classes)


class Trainer:
    optimizer_names = ()

    def __init__(self, model, shard_model: bool = False):
        self.model, self.shard_model = model, shard_model


def sovr_backbone_loss(model, head: Head, ps: PhotoSet) -> torch.Tensor:
    bb = Backbone(model, ps.backbone.config)  # eval mode
    gen = torch.Generator().manual_seed(2)
    rows = torch.arange(7)
    y = torch.randint(0, 4, (7,), generator=gen)
    attrs = torch.rand(4, 6, generator=gen)
    regions = distributed.per_rank(lambda r: ps.raw(bb, r, torch.device("cpu"), "regions"), rows)  # (7, R, C)
    out = head.sovr(regions)
    return F.cross_entropy(head.linear(out.v), y) + F.cross_entropy(attribute_logits(out.attribute_scores, attrs), y)


def msdn_loss(m: MSDNModel) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    raw = torch.rand(11, 5, 12, generator=gen)
    y = torch.randint(0, 4, (11,), generator=gen)
    out = m(raw)
    l1, l2 = m.compatibility(out.s1), m.compatibility(out.s2)
    return F.cross_entropy(l1[:, :4], y) + F.cross_entropy(l2[:, :4], y) + js_divergence(l1, l2)


def params(*modules):
    return [p for m in modules for p in m.parameters()]


def grads(*modules):
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params(*modules)]


def compare(make_loss, modules, shard_model: bool = False) -> dict:
    """(relative gradient difference averaged, and of a rank's own share) of ``make_loss(*modules)``."""
    whole = copy.deepcopy(modules)
    with distributed.whole():
        make_loss(*whole).backward()
    ref = grads(*whole)
    hooks = distributed.attach(Trainer(modules[-1], shard_model))
    make_loss(*modules).backward()
    own = grads(*modules)
    distributed.average_gradients(params(*modules))
    got = grads(*modules)
    hooks.detach()

    floor = 1e-6 * max(float(x.norm()) for x in ref)

    def rel(a, b):  # tensors whose whole gradient is below ``floor`` are numerically 0 (e.g. SOVR's FDE bias: 2e-8
        #             against the backbone's 0.1) and differ by float round-off alone: left out
        return max(float((x - y).norm() / x.norm()) for x, y in zip(a, b) if x.norm() > floor)

    return {"averaged": rel(ref, got), "own_share": rel(ref, own)}


def main(out: Path) -> None:
    distributed.init("cpu")
    photos = torch.randint(0, 256, (7, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ps = PhotoSet(photos, tiny_backbone())
    bb = ps.copy_to(torch.device("cpu"))
    dim = ps.raw(bb, torch.arange(1), torch.device("cpu"), "regions").shape[-1]
    torch.manual_seed(0)
    res = {"sovr_backbone": compare(lambda b, h: sovr_backbone_loss(b, h, ps), [bb.model, Head(dim, 6, 4)])}
    torch.manual_seed(0)
    m = MSDNModel(12, 6, 6, Options(attr_embed_dim=8))
    m.class_attributes.copy_(torch.rand(6, 6, generator=torch.Generator().manual_seed(4)))
    res["msdn"] = compare(msdn_loss, [m], shard_model=True)
    if distributed.is_main():
        out.write_text(json.dumps(res))
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
