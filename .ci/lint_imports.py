#!/usr/bin/env python3
"""Check the layering (dkgzsl_app -> trainer -> models) with import-linter, on the installed layout.

The contracts live in pyproject.toml under ``[tool.importlinter]``. import-linter's graph builder
(grimp) finds a package with ``importlib.util.find_spec`` and walks that one folder, so it would see
``dkgzsl_app/`` but not ``models/`` and ``trainer/``, which pyproject's
``[tool.setuptools.package-dir]`` maps in as ``dkgzsl_app.models`` and ``dkgzsl_app.trainer`` (an
editable install serves them through an import hook, which grimp never asks). This script stages the
installed layout as symlinks in a temporary folder (``dkgzsl_app/`` with ``models`` and ``trainer``
linked inside it, exactly as package-dir says), then runs ``lint-imports`` there with the repository's
pyproject.toml. Exit status: lint-imports' own (0 = every contract kept).

    .venv/bin/python .ci/lint_imports.py [--root REPO] [lint-imports options, e.g. --verbose]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """``[tool.setuptools.package-dir]`` as package name -> absolute folder."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    mapping = data.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    if not mapping:
        raise SystemExit(f"{pyproject}: no [tool.setuptools.package-dir]; nothing to stage")
    return {name: (pyproject.parent / folder).resolve() for name, folder in mapping.items() if name}


def stage(dirs: dict[str, Path], dest: Path) -> None:
    """Lay the packages out under ``dest`` as they are installed: one symlink per file or sub-folder."""
    def build(package: str, target: Path) -> None:
        children = {name.rsplit(".", 1)[1]: name for name in dirs if name.rpartition(".")[0] == package}
        target.mkdir(parents=True)
        for entry in dirs[package].iterdir():
            if entry.name not in children and entry.name != "__pycache__":
                (target / entry.name).symlink_to(entry)
        for short, name in children.items():
            build(name, target / short)

    for top in (name for name in dirs if "." not in name):
        build(top, dest / top)


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    if argv[:1] == ["--root"]:
        root, argv = Path(argv[1]).resolve(), argv[2:]
    pyproject = root / "pyproject.toml"
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    if exe is None:
        print("lint-imports not found: install the test extra (pip install -e \".[test]\")", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dkgzsl-layout-") as tmp:
        stage(package_dirs(pyproject), Path(tmp))
        # lint-imports puts its working folder first on sys.path, so the staged tree is what it finds
        return subprocess.run([exe, "--no-cache", str(pyproject), *argv], cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
