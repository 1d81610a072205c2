"""One training run for tests/test_train_ddp.py and benchmarks/train_ddp.py, alone or as a torchrun rank:
``python tests/ddp_worker.py SPEC.json``; SPEC: method, data (pooled/regions), config overrides, epochs,
run_dir, resume, out (rank 0 saves the model's state dict there), threads, die_after (epochs: this rank is
killed by SIGKILL after finishing that many, to test resume)."""
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


def main(spec: dict) -> None:
    distributed.init("cpu")
    if spec.get("data") == "regions":
        fs = make_region_set(n_classes=12, n_unseen=3, regions=4, distractors=2)
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
                  on_epoch=on_epoch if die is not None and rank == 0 else None)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if distributed.is_main():
        with torch.no_grad():
            scores = res.model.class_scores(task.features.float() if task.features.ndim == 2 else task.features)
        torch.save({"state": res.model.state_dict(), "scores": scores, "history": res.history, "seconds": seconds, "cpu_seconds": cpu,
                    "samples": len(task.train_idx) * spec["epochs"]}, spec["out"])
    distributed.teardown()


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
