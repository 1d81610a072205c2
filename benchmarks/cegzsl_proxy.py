#!/usr/bin/env python3
"""D3GZSL on f-CLSWGAN vs on CE-GZSL (``train --generator``) on an xlsa17 feature folder, in one run.

The protocol of benchmarks/proxy_ablation.py: each run selects its epochs and calibration γ on a validation
split carved from the seen classes (dkgzsl's default), and the test split is scored once, at the end.

    python benchmarks/cegzsl_proxy.py /tmp/helpers/cegzsl/CUB --epochs 5 --hidden 512 --embed 512 \
        --batch-size 64 --out benchmarks/results/cegzsl_proxy_cub.json

Make proxy features with ../shared/bench/make_proxy_features.py (quote its seed with the numbers).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.data import load_features
from dkgzsl_app.trainer.evaluate import evaluate_bundle
from dkgzsl_app.trainer.train import train_bundle


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features")
    p.add_argument("--method", default="d3gzsl")
    p.add_argument("--generators", default="clswgan,ce-gzsl")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--embed", type=int, default=512, help="teacher/student width; CE-GZSL's widths follow it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gen-per-unseen", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3, help="generator/critic (and E) Adam lr (papers: 1e-4)")
    p.add_argument("--cls-weight", type=float, default=1.0, help="β of f-CLSWGAN's classification loss (paper: 0.01)")
    p.add_argument("--ce-weight", type=float, default=1e-3, help="CE-GZSL's loss weights in G (paper: 0.001 CUB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="training threads (train_bundle's; 2 = dkgzsl's default)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()

    fs = load_features(a.features)
    rows = {}
    for gen in a.generators.split(","):
        cfg = TrainConfig(method=a.method, generator=gen, epochs=a.epochs, hidden_dim=a.hidden,
                          critic_hidden_dim=a.hidden, embed_dim=a.embed, batch_size=a.batch_size,
                          gen_per_unseen=a.gen_per_unseen, seed=a.seed, lr=a.lr, cls_weight=a.cls_weight,
                          ce_ins_weight=a.ce_weight, ce_cls_weight=a.ce_weight)
        run = Path(tempfile.mkdtemp(prefix=f"dkgzsl-{gen}-"))
        t, cpu = time.perf_counter(), time.process_time()
        out = train_bundle(fs, cfg, run, threads=a.threads)
        secs, cpu = time.perf_counter() - t, time.process_time() - cpu
        r = evaluate_bundle(load_bundle(out.bundle_dir), fs)
        rows[gen] = {**{k: r[k] for k in ("U", "S", "H", "CZSL", "AUSUC", "gamma", "H_uncalibrated")},
                     "selected_epoch": out.best_epoch, "train_seconds": round(secs, 1),
                     "train_cpu_seconds": round(cpu, 1),
                     "val_H_cal": [round(h.get("val_H_cal", 0.0), 4) for h in out.select_history if "val_H_cal" in h]}
        print(f"{gen}: {rows[gen]}", flush=True)
        shutil.rmtree(run)
        result = {"command": " ".join(["python", *sys.argv]), "features": str(a.features), "data_sha256": fs.sha256(),
                  "settings": vars(a) | {"out": str(a.out)},
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rows": rows}
        if a.out:  # after each run: a long comparison cut short keeps what finished
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(result, indent=2))
    print("\n| generator | U | S | H | CZSL | AUSUC | epochs | train s |\n|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100*r['U']:.1f} | {100*r['S']:.1f} | {100*r['H']:.1f} | {100*r['CZSL']:.1f} | "
              f"{100*r['AUSUC']:.1f} | {r['selected_epoch']} | {r['train_seconds']} |")


if __name__ == "__main__":
    main()
