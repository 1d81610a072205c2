"""Wall time and peak memory of add-class on a CUB-sized model, CPU.

A synthetic bundle with RANDOM weights (timing only; accuracy is measured by add_class_holdout.py on the
demo model): 200 classes (150 seen), 312 attributes, feature dim 2048, generator hidden 4096, embedding
2048. Each case runs in a fresh process with an empty registry:

  add_1        add_classes(...) with 1 class
  add_50       add_classes(...) with 50 classes at once
  add_1_to_50  1 class to a registry that already holds 50 (every user row is refit: 51)
  cli_add_1    the whole `dkgzsl add-class --attributes one.csv` process, imports included

Peak memory is the process's peak RSS (ru_maxrss) after the add, and before it (imports + bundle read).
For the choice of what to fit, it also times steps of refitting the whole head (all 201 rows, Adam,
autograd) on the same generated features, and extrapolates to 200 steps.

    .venv/bin/python benchmarks/add_class.py   # → benchmarks/results/add_class.json
    .venv/bin/python benchmarks/add_class.py --large 1000   # one add of 1,000 classes → add_class_large.json
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
C, SEEN, A, D, H, E = 200, 150, 312, 2048, 4096, 2048


def build_bundle(folder: Path) -> Path:
    import torch

    from dkgzsl_app.models.bundle import save_bundle
    from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
    from dkgzsl_app.models.networks import ZSLModel

    cfg = ModelConfig(method="d3gzsl", feature_dim=D, attribute_names=[f"a{i:03d}" for i in range(A)],
                      class_names=[f"class_{i:03d}" for i in range(C)], seen=[i < SEEN for i in range(C)],
                      generator=GeneratorConfig(noise_dim=A, hidden_dim=H, critic_hidden_dim=H),
                      head=HeadConfig(embed_dim=E), calibration=0.3, provenance={"note": "random weights"})
    torch.manual_seed(0)
    model = ZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.rand(C, A))
    return save_bundle(model, cfg, folder)


def classes(n: int, seed: int) -> dict[str, dict[str, float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {f"user_{seed}_{i}": {f"a{j:03d}": float(v) for j, v in enumerate(rng.uniform(0, 1, A))} for i in range(n)}


def rss_mb() -> float:
    """Peak RSS of this process so far (VmHWM: unlike ru_maxrss it starts afresh at exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(bundle: str, n: int, pre: int) -> None:
    import torch  # noqa: F401

    from dkgzsl_app.classes import add_classes

    src = f"local-dir:{bundle}"
    if pre:
        add_classes(src, classes(pre, 1), warn=lambda m: None)
    before = rss_mb()
    t = time.perf_counter()
    added = add_classes(src, classes(n, 2), warn=lambda m: None)
    seconds = time.perf_counter() - t
    assert len(added) == n
    print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb_before": round(before),
                      "peak_rss_mb": round(rss_mb())}))


def run_child(bundle: Path, n: int, pre: int = 0) -> dict:
    env = {**os.environ, "DKGZSL_HOME": tempfile.mkdtemp(prefix="dkgzsl-bench-")}
    out = subprocess.run([sys.executable, __file__, "--child", str(bundle), str(n), str(pre)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_cli(bundle: Path, work: Path) -> dict:
    import csv

    one = classes(1, 3)
    path = work / "one.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", *next(iter(one.values()))])
        for name, vals in one.items():
            w.writerow([name, *vals.values()])
    env = {**os.environ, "DKGZSL_HOME": tempfile.mkdtemp(prefix="dkgzsl-bench-")}
    cmd = [sys.executable, "-c", "import sys; from dkgzsl_app.cli import app; sys.argv = ['dkgzsl'] + "
           "sys.argv[1:]\ntry:\n    app()\nexcept SystemExit:\n    pass\n"
           "print([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0], file=sys.stderr)",
           "add-class", "--attributes", str(path), "--model", f"local-dir:{bundle}"]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    assert "added 1 class" in r.stdout, r.stdout + r.stderr
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(int(r.stderr.strip().splitlines()[-1]) / 1024)}


def full_head_step_seconds(bundle: Path, steps: int = 3) -> dict:
    """Seconds per Adam step of refitting every row of the head (the alternative not taken)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from dkgzsl_app.models.bundle import load_bundle
    from dkgzsl_app.classes.refit import RefitConfig, generated_embeddings

    b = load_bundle(bundle)
    k = RefitConfig().per_class(C)
    values = np.concatenate([b.model.class_attributes.numpy(), np.random.default_rng(0).uniform(0, 1, (1, A))])
    e = generated_embeddings(b.model, values.astype(np.float32), "l2", b.config.weights_sha256, k).clone()
    y = torch.arange(C + 1).repeat_interleave(k)
    head = torch.nn.Linear(E, C + 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss = F.cross_entropy(head(e), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    per = sorted(times[1:])[len(times[1:]) // 2]
    return {"features": len(y), "seconds_per_step": round(per, 3), "extrapolated_200_steps": round(200 * per, 1)}


def main() -> None:
    import torch

    work = Path(tempfile.mkdtemp(prefix="dkgzsl-bench-"))
    t = time.perf_counter()
    bundle = build_bundle(work / "bundle")
    build_s = time.perf_counter() - t
    results = {"add_1": run_child(bundle, 1), "add_50": run_child(bundle, 50),
               "add_1_to_50": run_child(bundle, 1, pre=50), "cli_add_1": run_cli(bundle, work)}
    for k, v in results.items():
        print(k, v, flush=True)
    from dkgzsl_app.classes.refit import RefitConfig

    out = {"benchmark": "add_class", "weights": "random (timing only)",
           "model": {"classes": C, "seen": SEEN, "attributes": A, "feature_dim": D, "generator_hidden": H,
                     "embed_dim": E, "bundle_mb": round((bundle / "model.safetensors").stat().st_size / 1e6, 1)},
           "refit": {**RefitConfig().__dict__, "per_class": RefitConfig().per_class(C)},
           "targets_seconds": {"add_1": 2.0, "add_50": 10.0}, "results": results,
           "full_head_refit_alternative": full_head_step_seconds(bundle),
           "build_bundle_seconds": round(build_s, 1), "device": "cpu", "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    path = ROOT / "benchmarks" / "results" / "add_class.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def large(n: int) -> None:
    """One add-class of ``n`` classes (a CSV-sized batch) in a fresh process: seconds and peak RSS."""
    import torch

    from dkgzsl_app.classes.refit import RefitConfig

    work = Path(tempfile.mkdtemp(prefix="dkgzsl-bench-"))
    bundle = build_bundle(work / "bundle")
    result = run_child(bundle, n)
    rc = RefitConfig()
    k = rc.per_class(C)
    out = {"benchmark": "add_class_large", "weights": "random (timing only)", "rows": n, "result": result,
           "model": {"classes": C, "attributes": A, "embed_dim": E}, "per_class": k,
           "generated_features": (C + n) * k, "batch_entries": rc.batch_entries, "device": "cpu",
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    path = ROOT / "benchmarks" / "results" / "add_class_large.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old = old if isinstance(old, dict) and "runs" in old else {"runs": {}}
    old["runs"][str(n)] = out
    path.write_text(json.dumps(old, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 2 and sys.argv[1] == "--large":
        large(int(sys.argv[2]))
    else:
        main()
