"""``python -m dkgzsl_app.trainer ARGS`` (and ``torchrun --nproc_per_node N -m dkgzsl_app.trainer ARGS``) is
``dkgzsl train ARGS``.

An entry point only, never imported by the trainer: it hands the command line to the app's CLI by module name
(runpy), so the trainer package keeps importing nothing of the app (pyproject's import-linter contracts).
"""
import runpy
import sys

if __name__ == "__main__":
    sys.argv[1:1] = ["train"]
    runpy.run_module("dkgzsl_app", run_name="__main__", alter_sys=True)
