#!/usr/bin/env bash
# Set up (scripts/setup.sh), then the main job on the bundled demo model, offline: render labelled demo
# photos of all 48 demo classes (seen and unseen; the true class is in each file name), classify them,
# and score the predictions against those names (U / S / H, CZSL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
photos=${DEMO_DIR:-demo-photos}
echo
echo "1/3 demo: drawing 3 labelled photos of each of the 48 demo classes into $photos/"
echo "          (the true class is in each file name; 'unseen' classes had no photos in training)"
.venv/bin/dkgzsl demo "$photos" --per-class 3
echo
echo "2/3 classify: the bundled demo model names each photo (best class, its confidence, the runner-up; 'unknown' if it looks like none of them)"
.venv/bin/dkgzsl classify "$photos" --top-k 3
echo
echo "3/3 evaluate: scoring those names against the true classes (U = unseen, S = seen accuracy,"
echo "          H = their harmonic mean; CZSL = accuracy among unseen classes only)"
.venv/bin/dkgzsl evaluate --images "$photos"
echo
echo "photos: $photos   browse them with: .venv/bin/dkgzsl browse $photos"
