#!/usr/bin/env bash
# Create ./.venv and install dkgzsl (editable) with its test extras. Safe to run again.
# torch is pinned: 2.14.1 + torchvision 0.29.1 install from files already on this kind of machine;
# an unpinned torch may download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
