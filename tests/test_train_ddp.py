"""Training under torchrun (issue 14, item 3): N gloo processes on the CPU train the single-process run's global
batch (trainer/distributed.py), rank 0 alone writes, and a killed run resumes to the same weights.

Tolerance ``ATOL`` = 1e-3 (absolute, on weights and on the trained classifier's class probabilities): the
sharded networks' weight gradients are the batch's sum split into one partial sum per rank, then added,
where one process sums the whole batch at once; the float32 results differ in the last bits (~1e-7
relative), and Adam, which divides by √v, turns that into weight differences of up to its lr (1e-3) per step
where a gradient is near 0. After the d3gzsl run here (5 teacher epochs + 2 epochs of ~9 iterations, 12
classes) the weights agree to ≤ 1e-4 (most tensors ≤ 1e-7); one epoch more of training moves them by ~0.1,
which the test checks, so the tolerance tells a wrong run from a right one. The slow tests compare the
probabilities only: e.g. CE-GZSL's comparator output bias gets a mathematically zero gradient (a shift every
class's score shares, which its softmax ignores), so Adam steps it on rounding noise alone, by 1.5e-2 in one
epoch (measured), without changing any output. Resume of a killed 2-process run is exact: bit for bit.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ddp_worker
from dkgzsl_app.trainer import distributed

WORKER = Path(__file__).parent / "ddp_worker.py"
ATOL = 1e-3


def run(tmp: Path, name: str, nproc: int, **spec) -> subprocess.CompletedProcess:
    spec = {"epochs": 1, "out": str(tmp / f"{name}.pt"), **spec}
    (tmp / f"{name}.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:  # in this process: the worker outside torchrun is plain single-process training
        ddp_worker.main(spec)
        return subprocess.CompletedProcess([], 0, "", "")
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               str(WORKER), str(tmp / f"{name}.json")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def result(tmp: Path, name: str) -> dict:
    return torch.load(tmp / f"{name}.pt", weights_only=False)


def worst(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def check_equal_to_one_process(tmp: Path, weights: bool = True, **spec):
    one, two = run(tmp, "one", 1, **spec), run(tmp, "two", 2, **spec)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = result(tmp, "one"), result(tmp, "two")
    assert float((a["scores"] - b["scores"]).abs().max()) < ATOL  # the trained classifier's probabilities
    if weights:
        assert worst(a["state"], b["state"]) < ATOL
    return a, b


def test_two_processes_train_the_one_process_batch_and_a_killed_run_resumes(tmp_path):
    """d3gzsl: 2 ranks = 1 process within ATOL; rank 0 killed after epoch 1 of 2, then --resume: the weights of
    an uninterrupted 2-rank run, bit for bit; only rank 0 wrote the run folder."""
    a, b = check_equal_to_one_process(tmp_path, epochs=2)
    assert [r["epoch"] for r in b["history"]] == [0, 1, 2]

    killed = run(tmp_path, "resumed", 2, epochs=2, run_dir=str(tmp_path / "run"), die_after=1)
    assert killed.returncode != 0 and not (tmp_path / "resumed.pt").exists()
    log = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [0, 1]
    # the tolerance is not vacuous: one epoch of training moves the weights by far more
    epoch1 = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert worst(epoch1, b["state"]) > 10 * ATOL
    resumed = run(tmp_path, "resumed", 2, epochs=2, run_dir=str(tmp_path / "run"), resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    c = result(tmp_path, "resumed")
    assert same(c["state"], b["state"])
    assert c["history"] == b["history"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


@pytest.mark.slow
@pytest.mark.parametrize("method, spec", [
    ("dkgzsl", {}),
    ("dkgzsl", {"data": "regions"}),
    ("msdn", {"data": "regions"}),
    ("d3gzsl", {"config": {"generator": "ce-gzsl"}}),
])
def test_every_method_under_two_processes(tmp_path, method, spec):
    check_equal_to_one_process(tmp_path, weights=False, method=method, **spec)


def test_not_launched_nothing_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init("cpu") is None and not distributed.active() and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init("cpu") is None and not torch.distributed.is_initialized()

    class Tr:  # attach() hooks nothing outside torchrun
        model = torch.nn.Linear(2, 2)
        optimizer_names = ()

    assert distributed.attach(Tr()) is None
    assert distributed.shard(torch.arange(5)).tolist() == [0, 1, 2, 3, 4]
    assert distributed.broadcast({"a": 1}) == {"a": 1}


def test_rows_split_the_batch_in_contiguous_near_equal_shares():
    for n in (0, 1, 2, 7, 32, 33):
        for world in (1, 2, 3):
            shares = [distributed.rows(n, r, world) for r in range(world)]
            assert shares[0][0] == 0 and shares[-1][1] == n
            assert all(shares[i][1] == shares[i + 1][0] for i in range(world - 1))
            sizes = [hi - lo for lo, hi in shares]
            assert max(sizes) - min(sizes) <= 1


def test_train_nproc_launches_torchrun_with_the_same_options(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from dkgzsl_app import train_launch
    from dkgzsl_app.cli import app

    seen = {}

    def fake_run(cmd, env):
        seen["cmd"], seen["env"] = cmd, env
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(train_launch.subprocess, "run", fake_run)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    feats = tmp_path / "f"
    feats.mkdir()
    r = CliRunner().invoke(app, ["train", "--features", str(feats), "--out", str(tmp_path / "o"), "--nproc", "2",
                                 "--epochs", "3", "--device", "cpu", "--no-g-od-real"])
    assert r.exit_code == 0, r.output
    cmd = seen["cmd"]
    assert cmd[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert cmd[7:9] == ["dkgzsl_app", "train"] and "--nproc" not in cmd
    args = cmd[9:]
    assert args[args.index("--epochs") + 1] == "3" and args[args.index("--features") + 1] == str(feats)
    assert "--no-g-od-real" in args and args[args.index("--device") + 1] == "cpu"

    monkeypatch.setenv("WORLD_SIZE", "2")  # already under torchrun: --nproc is a usage error
    r = CliRunner().invoke(app, ["train", "--features", str(feats), "--out", str(tmp_path / "o"), "--nproc", "2"])
    assert r.exit_code == 2 and "torchrun" in r.output


@pytest.mark.slow
def test_cli_train_nproc_2_writes_one_bundle(tmp_path):
    """`dkgzsl train --nproc 2` end to end on a tiny feature folder: rank 0 writes the bundle and prints."""
    from dkgzsl_app.trainer.data import save_feature_folder
    from dkgzsl_app.trainer.synthetic import make_feature_set

    save_feature_folder(make_feature_set(n_classes=12, n_unseen=3), tmp_path / "feats")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dkgzsl_app", "train", "--features", str(tmp_path / "feats"), "--out", str(out),
           "--epochs", "2", "--teacher-epochs", "2", "--hidden-dim", "32", "--embed-dim", "16", "--device", "cpu",
           "--threads", "1", "--nproc", "2", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["bundle"] == str(out / "bundle")
    assert (out / "bundle" / "config.json").exists()
    assert np.isfinite(json.loads((out / "bundle" / "config.json").read_text())["calibration"])
