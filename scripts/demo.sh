#!/usr/bin/env bash
# Set up (scripts/setup.sh), then the main job on the bundled demo model, offline: render labelled demo
# photos of all 48 demo classes (seen and unseen; the true class is in each file name), classify them,
# and score the predictions against those names (U / S / H, CZSL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
photos=${DEMO_DIR:-demo-photos}
.venv/bin/dkgzsl demo "$photos" --per-class 3
.venv/bin/dkgzsl classify "$photos" --top-k 3
.venv/bin/dkgzsl evaluate --images "$photos"
echo "photos: $photos   browse them with: .venv/bin/dkgzsl browse $photos"
