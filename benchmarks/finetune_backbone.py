#!/usr/bin/env python3
"""Frozen backbone features vs ``--finetune-backbone`` on the rendered demo set: seconds per epoch (training
photos/s), validation H of the selection run, and test S/U/H from ``dkgzsl evaluate`` on fresh photos.

Both runs use the same options (the demo model's widths, fewer epochs) and the real backbone
(tf_efficientnet_lite0, packaged ImageNet weights); only ``finetune_backbone`` differs. Training runs in this
process (to time each epoch), evaluation through the CLI. Run it at low priority on a shared machine:

    python benchmarks/finetune_backbone.py --per-class 20 --epochs 4 --teacher-epochs 3 \\
        --out /tmp/ftbench --json benchmarks/results/finetune_backbone_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from dkgzsl_app.image_data import feature_set_from_images, finetune_set_from_images
from dkgzsl_app.models.backbone import create_backbone
from dkgzsl_app.trainer.config import TrainConfig
from dkgzsl_app.trainer.train import train_bundle

DKGZSL = [sys.executable, "-m", "dkgzsl_app"]


def render(out: Path, per_class: int, test_per_class: int) -> tuple[Path, Path]:
    train, test = out / "train", out / "test"
    if not (train / "classes.csv").exists():
        subprocess.run([*DKGZSL, "demo", "--training", "--per-class", str(per_class), "--seed", "0", str(train)], check=True)
    if not test.exists():
        subprocess.run([*DKGZSL, "demo", "--per-class", str(test_per_class), "--seed", "1", str(test)], check=True)
    return train, test


def run(name: str, train: Path, test: Path, cfg: TrainConfig, out: Path, device: str) -> dict:
    backbone = create_backbone("tf_efficientnet_lite0")
    t0 = time.perf_counter()
    if cfg.finetune_backbone:
        fs, photos = finetune_set_from_images(train, train / "classes.csv", backbone, device, warn=print)
    else:  # no feature cache: extraction is timed like the fine-tuned run's initial features
        fs, photos = feature_set_from_images(train, train / "classes.csv", backbone, device, warn=print), None
    prepare_s = time.perf_counter() - t0
    marks: list[tuple[str, dict, float]] = []
    t1 = time.perf_counter()
    outcome = train_bundle(fs, cfg, out / name, device=device, backbone=backbone.config, photos=photos,
                           on_epoch=lambda phase, row: marks.append((phase, row, time.perf_counter())))
    train_s = time.perf_counter() - t1
    epochs, last = [], t1
    for phase, row, t in marks:  # epoch 0 of a phase = the teacher warm-up
        epochs.append({"phase": phase, "epoch": row["epoch"], "seconds": round(t - last, 2),
                       **{k: round(v, 4) for k, v in row.items() if k.startswith("val_")}})
        last = t
    n_select = sum(1 for p, r, _ in marks if p == "select" and r["epoch"] > 0)
    r = subprocess.run([*DKGZSL, "evaluate", "--model", str(outcome.bundle_dir), "--images", str(test), "--json",
                        "--device", device], check=True, capture_output=True, text=True)
    test_m = json.loads(r.stdout)
    sel = [e for e in epochs if e["phase"] == "select" and e["epoch"] > 0]
    fin = [e for e in epochs if e["phase"] == "final" and e["epoch"] > 0]
    n_final = len(fs.trainval)
    sec_final = sum(e["seconds"] for e in fin) / max(1, len(fin))
    return {
        "run": name, "finetune_backbone": cfg.finetune_backbone, "prepare_s": round(prepare_s, 1),
        "train_s": round(train_s, 1), "selected_epoch": outcome.best_epoch, "calibration": outcome.calibration,
        "select_epochs": n_select, "final_train_photos": n_final,
        "final_epoch_s": round(sec_final, 2), "final_photos_per_s": round(n_final / sec_final, 1) if sec_final else None,
        "select_val_H_cal": max((e.get("val_H_cal", 0.0) for e in sel), default=None),
        "test": {k: test_m[k] for k in ("S", "U", "H", "CZSL", "S_uncalibrated", "U_uncalibrated", "H_uncalibrated",
                                         "n_test_seen", "n_test_unseen")},
        "epochs": epochs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--test-per-class", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backbone-lr", type=float, default=1e-5)
    ap.add_argument("--method", default="d3gzsl")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=("frozen", "finetune"), default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("DKGZSL_HOME", str(args.out / "home"))
    train, test = render(args.out, args.per_class, args.test_per_class)
    base = dict(method=args.method, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
                batch_size=args.batch_size, hidden_dim=512, critic_hidden_dim=512, embed_dim=256, lr=1e-3,
                gen_per_unseen=20, backbone_lr=args.backbone_lr)  # the demo model's widths and rates
    rows = []
    for name, ft in (("frozen", False), ("finetune", True)):
        if args.only in (None, name):
            rows.append(run(name, train, test, TrainConfig(finetune_backbone=ft, **base), args.out, args.device))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "epochs"}), flush=True)
    result = {"command": " ".join(sys.argv), "config": base, "per_class": args.per_class,
              "test_per_class": args.test_per_class, "torch": torch.__version__, "python": platform.python_version(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": args.device,
              "machine_note": "shared 2-core CPU, other jobs running (timings are upper bounds)", "runs": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
