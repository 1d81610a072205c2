#!/usr/bin/env bash
# Create ./.venv and install dkgzsl (editable) with its test extras. Safe to run again.
# torch is pinned: 2.14.1 + torchvision 0.29.1 install from files already on this kind of machine;
# an unpinned torch may download a multi-GB CUDA build.
# pip's output goes to .venv/setup.log and is shown only if a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
log=.venv/setup.log
: >"$log"
pip_install() {
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >>"$log" 2>&1; then
        echo "setup: 'pip install $*' failed; its output (from $log):" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}
echo "setup: installing dkgzsl and its dependencies into .venv (pip's log: $log)"
pip_install --upgrade pip
pip_install "torch==2.14.1" "torchvision==0.29.1"
pip_install -e ".[test]"
