"""One training run for tests/test_train_ddp.py and benchmarks/train_ddp.py, alone or as a torchrun rank:
``python tests/ddp_worker.py SPEC.json``; SPEC: method, data (pooled/regions), config overrides, epochs,
run_dir, resume, out (rank 0 saves the model's state dict there), threads, die_after (epochs: this rank is
killed by SIGKILL after finishing that many, to test resume); data "photos" trains with --finetune-backbone
(tiny random backbone, random photos); extract (with photos, cache) runs the split feature extraction only, twice (cold and warm cache)."""
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_config  # noqa: E402
from dkgzsl_app.trainer import distributed  # noqa: E402
from dkgzsl_app.trainer.determinism import deterministic_training  # noqa: E402
from dkgzsl_app.trainer.loop import fit  # noqa: E402
from dkgzsl_app.trainer.synthetic import make_feature_set, make_region_set  # noqa: E402
from dkgzsl_app.trainer.task import make_task  # noqa: E402


def tiny_backbone():
    """test_efficientnet with seeded random weights at 64 px (as tests/test_finetune_backbone.py)."""
    import dataclasses

    from dkgzsl_app.models.backbone import Backbone, create_backbone

    torch.manual_seed(0)
    bb = create_backbone("test_efficientnet", weights="none")
    return Backbone(bb.model, dataclasses.replace(bb.config, input_size=[3, 64, 64]))


def photo_set(spec: dict):
    """(FeatureSet, PhotoSet): random uint8 photos, their starting features computed (split over the ranks under
    torchrun) by the backbone's own forward pass, as ``train --images --finetune-backbone`` does."""
    import dataclasses

    from dkgzsl_app.trainer.backbone_ft import PhotoSet

    kind = spec.get("kind", "pooled")
    fs = make_feature_set(n_classes=6, n_unseen=1, per_class=8)
    photos = torch.randint(0, 256, (len(fs.labels), 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    ps = PhotoSet(photos, tiny_backbone())
    cpu = torch.device("cpu")
    feats = ps.features(ps.copy_to(cpu), torch.arange(len(photos)), cpu, kind)
    return dataclasses.replace(fs, features=feats.numpy()), ps


def extract_photos(spec: dict) -> None:
    """``extract_cached(ranks=True)`` of the photo paths ``spec["photos"]`` through the cache ``spec["cache"]``:
    rank 0 saves the features it returns (every rank checks it has all of them)."""
    from dkgzsl_app.cache import FeatureCache
    from dkgzsl_app.extract import extract_cached

    paths = spec["photos"]
    runs = []
    for _ in range(2):  # cold cache, then warm (only the unreadable photo is tried again)
        ticks = []
        got = extract_cached(tiny_backbone(), paths, "cpu", spec.get("batch", 4), 0, FeatureCache(Path(spec["cache"])), ticks.append,
                             "fp32", False, spec.get("kind", "pooled"), ranks=True)
        assert sorted([*got.features, *got.errors]) == list(range(len(paths))) and sum(ticks) == len(paths), ticks
        runs.append({"features": got.features, "errors": got.errors, "ticks": ticks})
    if distributed.is_main():
        torch.save(runs, spec["out"])


ROWS: dict[str, int] = {}  # rows this process ran through each sharded network (count_rows)


def count_rows() -> None:
    """Count the rows that SOVR, MSDN's model and the fine-tuned backbone compute in this process."""
    from dkgzsl_app.models.methods.msdn import MSDNModel
    from dkgzsl_app.models.sovr import SOVR
    from dkgzsl_app.trainer.backbone_ft import PhotoSet

    ROWS.clear()
    for cls, name, which in ((SOVR, "forward", "sovr"), (MSDNModel, "forward", "msdn"), (PhotoSet, "raw", "backbone")):
        if getattr(getattr(cls, name), "_counted", False):  # patched by an earlier run in this process
            continue

        def counted(self, *args, _f=getattr(cls, name), _w=which, **kw):
            x = args[1] if _w == "backbone" else args[0]
            ROWS[_w] = ROWS.get(_w, 0) + len(x)
            return _f(self, *args, **kw)
        counted._counted = True
        setattr(cls, name, counted)


def main(spec: dict) -> None:
    distributed.init("cpu")
    count_rows()
    if spec.get("extract"):
        extract_photos(spec)
        distributed.teardown()
        return
    ps = None
    if spec.get("data") == "photos":  # --finetune-backbone
        fs, ps = photo_set(spec)
    elif spec.get("data") == "regions":
        fs = make_region_set(**{"n_classes": 12, "n_unseen": 3, "regions": 4, "distractors": 2,
                                **spec.get("data_args", {})})
    else:
        fs = make_feature_set(**{"n_classes": 12, "n_unseen": 3, **spec.get("data_args", {})})
    task = make_task(fs, np.arange(len(fs.class_names)), fs.seen, np.asarray(fs.trainval))
    cfg = tiny_config(method=spec.get("method", "d3gzsl"), **spec.get("config", {}))
    die = spec.get("die_after")
    rank = distributed.rank()

    def on_epoch(row):
        if die is not None and row["epoch"] >= die and rank == spec.get("die_rank", 0):
            os.kill(os.getpid(), signal.SIGKILL)

    with deterministic_training(spec.get("threads", 1)):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fit(task, cfg, spec["epochs"], Path(spec["run_dir"]) if spec.get("run_dir") else None,
                  resume=spec.get("resume", False), device="cpu",
                  on_epoch=on_epoch if die is not None and rank == 0 else None, photos=ps)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = dict(ROWS)  # during fit (not the scoring below)
    if distributed.is_main():
        with torch.no_grad():
            scores = res.model.class_scores(task.features.float() if task.features.ndim == 2 else task.features)
        torch.save({"state": res.model.state_dict(), "scores": scores, "history": res.history, "seconds": seconds, "cpu_seconds": cpu,
                    "samples": len(task.train_idx) * spec["epochs"], "backbone": res.backbone,
                    "features": torch.as_tensor(fs.features), "rows": rows}, spec["out"])
    distributed.teardown()


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
