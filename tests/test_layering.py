"""The layering app -> trainer -> models, checked by import-linter (`lint-imports`, run by .ci/run)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"

pytest.importorskip("importlinter")


def lint(root: Path) -> subprocess.CompletedProcess:
    # lint-imports puts its working folder first on sys.path: run in ``root``, it checks that tree
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


def copy_tree(dest: Path) -> Path:
    for name in ("dkgzsl_app", "models", "trainer"):
        shutil.copytree(REPO / name, dest / name, symlinks=True,  # dkgzsl_app/models -> ../models stays a link
                        ignore=shutil.ignore_patterns("__pycache__", "pretrained"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_layering_contracts_hold():
    res = lint(REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


@pytest.mark.parametrize("victim, line, broken", [
    ("trainer/train.py", "from .. import __version__", "never import the app package root"),
    ("trainer/task.py", "from ..cli_util import warn", "dkgzsl_app.trainer is not allowed to import dkgzsl_app.cli_util"),
    ("models/losses.py", "from ..trainer import task", "dkgzsl_app.models is not allowed to import dkgzsl_app.trainer"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, victim, line, broken):
    root = copy_tree(tmp_path)
    with open(root / victim, "a", encoding="utf-8") as f:
        f.write(f"\n{line}\n")
    res = lint(root)
    assert res.returncode != 0
    assert broken in res.stdout, res.stdout
