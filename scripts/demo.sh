#!/usr/bin/env bash
# Set up (scripts/setup.sh), then the end-to-end job this version can do offline: make a small
# synthetic zero-shot feature set, train a D3GZSL model on it, and evaluate it (U / S / H, CZSL, AUSUC).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work=${DEMO_DIR:-$(mktemp -d)}
.venv/bin/python -m dkgzsl_app.trainer.synthetic "$work/features"
.venv/bin/dkgzsl train --features "$work/features" --out "$work/run" --epochs 20 --teacher-epochs 5 \
    --batch-size 32 --hidden-dim 64 --embed-dim 32 --lr 1e-3 --gen-per-unseen 10 --device cpu
.venv/bin/dkgzsl evaluate --model "local-dir:$work/run/bundle" --features "$work/features" --plot "$work/curve.png"
echo "run folder: $work/run   seen-unseen curve: $work/curve.png"
