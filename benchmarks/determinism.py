"""Which execution settings change a training run's bytes, and what pinning them costs in time.

Trains the same configuration several times, each in a fresh Python process (the CPU kernel set is
chosen when torch is imported, so ATEN_CPU_CAPABILITY must be set before that), and prints per variant:
the weights' sha256, the selected epoch, γ, the provenance's thread count / CPU capability and the
training time. Variants: intra-op threads 1 and 2, torch's kernels limited to AVX2 and to no SIMD
(``default``), and deterministic algorithms off (the old behaviour) against on.

    python benchmarks/determinism.py                         # synthetic features, 1280 wide (minutes)
    python benchmarks/determinism.py --features DIR --epochs 8 --hidden-dim 512 --embed-dim 256

Results of the runs quoted in README "Reproducibility": benchmarks/results/determinism.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time, contextlib
import dkgzsl_app.trainer.train as T
from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.data import load_features
a = json.loads(sys.argv[1])
if not a["deterministic"]:  # the behaviour before deterministic_training: torch's settings as they are
    import torch
    torch.set_num_threads(a["threads"])
    @contextlib.contextmanager
    def plain(threads, device):
        from dkgzsl_app.trainer.determinism import conditions
        yield conditions(device)
    T.deterministic_training = plain
fs = load_features(a["features"])
cfg = TrainConfig(**a["config"])
t = time.perf_counter()
out = T.train_bundle(fs, cfg, a["out"], threads=a["threads"])
secs = time.perf_counter() - t
c = json.loads((out.bundle_dir / "config.json").read_text())
p = c["provenance"]
print(json.dumps({"sha256": c["weights_sha256"], "epoch": out.best_epoch, "gamma": out.calibration,
                  "threads": p["threads"], "cpu": p["cpu_capability"], "deterministic": p["deterministic"],
                  "secs": round(secs, 1)}))
"""

VARIANTS = [  # name, threads, deterministic, extra environment
    ("2 threads (default)", 2, True, {}),
    ("2 threads, deterministic off", 2, False, {}),
    ("1 thread", 1, True, {}),
    ("2 threads, ATEN_CPU_CAPABILITY=avx2", 2, True, {"ATEN_CPU_CAPABILITY": "avx2"}),
    ("2 threads, ATEN_CPU_CAPABILITY=default", 2, True, {"ATEN_CPU_CAPABILITY": "default"}),
    ("2 threads again", 2, True, {}),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", help="dkgzsl or xlsa17 feature folder (default: the synthetic set, seed 0)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dim", type=int, default=1280, help="synthetic feature width (1280: the demo backbone's; "
                   "at 64 the thread count changes no bits)")
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--embed-dim", type=int, default=128)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        features = a.features
        if features is None:
            from dkgzsl_app.trainer.data import save_feature_folder
            from dkgzsl_app.trainer.synthetic import make_feature_set

            features = str(Path(tmp) / "synthetic")
            save_feature_folder(make_feature_set(0, n_classes=30, n_unseen=6, dim=a.dim), features)
        config = dict(epochs=a.epochs, teacher_epochs=5, batch_size=64, hidden_dim=a.hidden_dim,
                      critic_hidden_dim=a.hidden_dim, embed_dim=a.embed_dim, lr=1e-3, cls_weight=1.0,
                      gen_per_unseen=20, seed=0)
        print("| variant | weights sha256 | epoch | γ | threads | CPU capability | deterministic | train s |")
        print("|---|---|---|---|---|---|---|---|")
        for i, (name, threads, det, env) in enumerate(VARIANTS):
            arg = {"features": features, "config": config, "threads": threads, "deterministic": det,
                   "out": str(Path(tmp) / f"run{i}")}
            r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(arg)], env={**os.environ, **env},
                               capture_output=True, text=True)
            if r.returncode:
                print(f"| {name} | failed: {r.stderr.strip().splitlines()[-1]} |")
                continue
            o = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"| {name} | {o['sha256'][:12]} | {o['epoch']} | {o['gamma']:.4f} | {o['threads']} | {o['cpu']} "
                  f"| {o['deterministic']} | {o['secs']} |", flush=True)


if __name__ == "__main__":
    main()
