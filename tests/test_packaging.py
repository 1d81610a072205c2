"""Packaging: the bundled demo model ships in the wheel, and building it says nothing alarming.

`pip install -e .` (scripts/setup.sh, the first thing a newcomer runs) used to print ~60 lines of
setuptools' "Package 'dkgzsl_app.models.pretrained' is absent from the `packages` configuration"
because include-package-data scanned the model folder as if it were a package.
"""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_demo_model_without_packaging_warnings(tmp_path):
    # Build from a copy so the shared checkout gets no build/ or egg-info litter.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("dkgzsl_app", "models", "trainer"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path / "dist"
    code = ("import sys; from setuptools import build_meta as b; "
            "print(b.build_wheel(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code, str(out)], cwd=src,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "absent from the `packages` configuration" not in log
    assert "Package would be ignored" not in log

    wheel = out / proc.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = sorted(p.relative_to(ROOT / "models").as_posix()
                     for p in (ROOT / "models" / "pretrained").rglob("*") if p.is_file())
    assert bundled, "no bundled model found under models/pretrained"
    for rel in bundled:
        assert f"dkgzsl_app/models/{rel}" in names
    assert "dkgzsl_app/trainer/render.py" in names and "dkgzsl_app/tui/app.py" in names
    # top level stays dkgzsl_app only: models/ and trainer/ are mapped, never installed as-is
    assert all(n.startswith(("dkgzsl_app/", "dkgzsl-0.1.0.dist-info/")) for n in names)
