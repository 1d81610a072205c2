"""Training under torchrun (issue 14, item 3): N gloo processes on the CPU train the single-process run's global
batch (trainer/distributed.py), rank 0 alone writes, and a killed run resumes to the same weights.

Tolerances: the trained classifier's class probabilities within ``ATOL`` = 1e-3 (absolute), and (d3gzsl) every
weight tensor within ``RTOL`` = 1e-2 relative (‖a − b‖ / ‖a‖). Why not bit for bit: the sharded networks' weight
gradients are the batch's sum split into one partial sum per rank, then added, where one process sums the
whole batch at once; the float32 results differ in the last bits (~1e-7 relative). Adam, which divides by
√v, turns that into steps that differ by up to its lr where a gradient is near 0 (measured after one epoch:
critic 1e-4, every other network ≤ 1e-7 absolute), and the GAN's critic/generator game then grows it: after
this run's 2 epochs (~9 iterations each, 5 critic steps per iteration, odd batches of 31) the worst tensor
(the critic's) differs by 2.7e-3 relative, the classifier's probabilities by 1.4e-5 (dkgzsl: 2e-8, CE-GZSL:
2.4e-5, msdn: 1.6e-6 with its model split over the ranks). One epoch of
training moves the weights by 0.43 relative, which the test checks, so the tolerance tells a wrong run from a
right one. The slow tests compare the probabilities only: e.g. CE-GZSL's comparator output bias gets a
mathematically zero gradient (a shift every class's score shares, which its softmax ignores), so Adam steps
it on rounding noise alone, by 1.5e-2 in one epoch (measured), without changing any output. Resume of a
killed 2-process run is exact: bit for bit.

Split over the ranks as well (issue 14, second round): DKGZSL's SOVR, MSDN's and MSDN++'s model, a backbone
being fine-tuned and the feature extraction of ``train --images/--dataset``; each test checks that rank 0
really computed about half of the rows (tests/ddp_worker.py counts them).
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
ATOL = 1e-3  # on the trained classifier's class probabilities
RTOL = 1e-2  # on each weight tensor, relative (worst)


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
    return torch.load(tmp / f"{name}.pt", weights_only=True)  # tensors and plain containers only


def worst(a: dict, b: dict) -> float:
    """The largest relative difference of two state dicts' tensors, ‖a − b‖ / ‖a‖ (Frobenius; a few elements
    whose gradient is near 0 move by up to Adam's lr on rounding noise alone, see the module docstring)."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).norm() / a[k].double().norm().clamp_min(1e-12))
               for k in a if a[k].numel())


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def check_equal_to_one_process(tmp: Path, weights: bool = True, **spec):
    one, two = run(tmp, "one", 1, **spec), run(tmp, "two", 2, **spec)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = result(tmp, "one"), result(tmp, "two")
    assert float((a["scores"] - b["scores"]).abs().max()) < ATOL  # the trained classifier's probabilities
    if weights:
        assert worst(a["state"], b["state"]) < RTOL
    return a, b


def test_two_processes_train_the_one_process_batch_and_a_killed_run_resumes(tmp_path):
    """d3gzsl: 2 ranks = 1 process within ATOL; rank 0 killed after epoch 1 of 2, then --resume: the weights of
    an uninterrupted 2-rank run, bit for bit; only rank 0 wrote the run folder."""
    odd = {"config": {"batch_size": 31}}  # odd batches: the ranks' shares differ by one row (and even ones: 30
    #   generated unseen features)
    a, b = check_equal_to_one_process(tmp_path, epochs=2, **odd)
    assert [r["epoch"] for r in b["history"]] == [0, 1, 2]

    killed = run(tmp_path, "resumed", 2, epochs=2, run_dir=str(tmp_path / "run"), die_after=1, **odd)
    assert killed.returncode != 0 and not (tmp_path / "resumed.pt").exists()
    log = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [0, 1]
    # the tolerance is not vacuous: one epoch of training moves the weights by far more
    epoch1 = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert worst(epoch1, b["state"]) > 10 * RTOL
    resumed = run(tmp_path, "resumed", 2, epochs=2, run_dir=str(tmp_path / "run"), resume=True, **odd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    c = result(tmp_path, "resumed")
    assert same(c["state"], b["state"])
    assert c["history"] == b["history"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


@pytest.mark.slow
@pytest.mark.parametrize("method, spec", [
    ("dkgzsl", {}),
    ("msdnpp", {"data": "regions", "config": {"counterfactual": "random"}}),
    ("d3gzsl", {"config": {"generator": "ce-gzsl"}}),
])
def test_every_method_under_two_processes(tmp_path, method, spec):
    check_equal_to_one_process(tmp_path, weights=False, method=method, **spec)


def split(a: dict, b: dict, network: str) -> float:
    """Rows rank 0 of the 2-process run ``b`` computed through ``network`` against one process's (``a``)."""
    return b["rows"][network] / a["rows"][network]


@pytest.mark.slow
def test_dkgzsl_sovr_runs_split_and_equals_one_process(tmp_path):
    """DKGZSL on regions (SOVR: FDE + ARA): rank 0 refines about half of every batch (and of the snapshots of v);
    2 processes = 1 within ATOL on the probabilities and RTOL on every weight (measured 2.2e-8 and 1.2e-6)."""
    a, b = check_equal_to_one_process(tmp_path, epochs=2, method="dkgzsl", data="regions",
                                      config={"batch_size": 31})
    assert 0.45 < split(a, b, "sovr") < 0.55


@pytest.mark.slow
def test_msdn_runs_split_equals_one_process_and_a_killed_run_resumes(tmp_path):
    """MSDN: rank 0 runs the model on half of each batch; 2 processes = 1 (measured: probabilities 1.6e-6, weights
    2.3e-6 relative); rank 0 killed after epoch 1 of 2 resumes bit for bit to the uninterrupted 2-process run."""
    spec = {"method": "msdn", "data": "regions", "config": {"batch_size": 31}}
    a, b = check_equal_to_one_process(tmp_path, epochs=2, **spec)
    assert 0.45 < split(a, b, "msdn") < 0.55
    assert worst(a["state"], b["state"]) < 1e-4  # no GAN here: far closer than RTOL
    killed = run(tmp_path, "resumed", 2, epochs=2, run_dir=str(tmp_path / "run"), die_after=1, **spec)
    assert killed.returncode != 0 and not (tmp_path / "resumed.pt").exists()
    epoch1 = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert worst(epoch1, b["state"]) > 1e-2  # an epoch moves the weights by far more than the tolerance
    resumed = run(tmp_path, "resumed", 2, epochs=2, run_dir=str(tmp_path / "run"), resume=True, **spec)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    c = result(tmp_path, "resumed")
    assert same(c["state"], b["state"]) and c["history"] == b["history"]


FINETUNE = {"data": "photos", "config": {"finetune_backbone": True, "backbone_lr": 1e-3, "batch_size": 7,
                                         "hidden_dim": 32, "critic_hidden_dim": 32, "embed_dim": 16,
                                         "critic_steps": 2, "teacher_epochs": 2}}


@pytest.mark.slow
def test_backbone_finetuning_runs_split_and_equals_one_process(tmp_path):
    """--finetune-backbone (d3gzsl, tiny random backbone, 30 training photos in odd batches of 7): each rank runs
    the backbone on its share of every batch, of the snapshots and of the starting features (eval-mode
    BatchNorm: frozen running statistics, so the split is exact); the starting features are the one-process
    ones, the trained backbone within RTOL (measured 1.8e-6), the head's weights within RTOL (7.5e-4)."""
    a, b = check_equal_to_one_process(tmp_path, epochs=2, **FINETUNE)
    assert torch.allclose(a["features"], b["features"], rtol=1e-5, atol=1e-6)
    assert worst(a["backbone"], b["backbone"]) < RTOL
    assert 0.45 < split(a, b, "backbone") < 0.55


def gradient_check(script: str, tmp_path) -> dict:
    """Run tests/SCRIPT on 2 gloo ranks (1 thread each); its JSON of gradient differences."""
    out = tmp_path / "grads.json"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(Path(__file__).parent / script), str(out)],
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


def test_sharded_gradients_equal_the_whole_batchs(tmp_path):
    """The mechanics alone, one backward pass (tests/ddp_grad_check.py): a critic's WGAN loss + gradient penalty
    (double backward through the sharded critic) and a student's CE + pairwise L_be on an odd batch of 11,
    sharded over 2 ranks and averaged: the one-process gradients up to float reassociation (measured 4e-7
    relative); a rank's own share alone is far off (measured 1.2)."""
    diff = gradient_check("ddp_grad_check.py", tmp_path)
    assert diff["averaged"] < 1e-5
    assert diff["own_share"] > 0.1


def test_sovr_backbone_and_msdn_split_gradients_equal_the_whole_batchs(tmp_path):
    """One backward pass (tests/ddp_shard_check.py), 2 gloo ranks: a fine-tuned backbone (per_rank) feeding SOVR
    (sharded hooks) and a classifier on an odd batch of 7 photos, and MSDN's loss on 11 rows: the one-process
    gradients (measured 1.2e-5 and 2.1e-7 relative); a rank's own share alone is far off (2.6, 1.2)."""
    diff = gradient_check("ddp_shard_check.py", tmp_path)
    for case in ("sovr_backbone", "msdn"):
        assert diff[case]["averaged"] < 1e-4 and diff[case]["own_share"] > 0.1, diff


def test_extraction_is_split_over_the_ranks(tmp_path):
    """`train --images/--dataset` under 2 ranks: each extracts a share of the one-process run's batches of the
    photos missing from the cache (8 photos in batches of 3: rank 0 the first batch, rank 1 the other two) and
    they all-gather; the features and the unreadable photo's error are one process's, bit for bit; local rank 0
    wrote them all to the cache (a second call finds them there and extracts the unreadable photo alone)."""
    from PIL import Image

    from dkgzsl_app.cache import FeatureCache, backbone_key, file_digest
    from dkgzsl_app.extract import extract_cached

    paths = []
    for i in range(7):
        p = tmp_path / f"p{i}.jpg"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    paths.insert(3, str(tmp_path / "bad.jpg"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1): the thread count changes float sums' order
    try:
        one = extract_cached(ddp_worker.tiny_backbone(), paths, "cpu", 3, 0, None, None, "fp32", False, ranks=True)
    finally:
        torch.set_num_threads(threads)
    spec = {"extract": True, "photos": paths, "cache": str(tmp_path / "cache.db"), "batch": 3}
    two = run(tmp_path, "two", 2, **spec)
    assert two.returncode == 0, two.stderr[-3000:]
    cold, warm = result(tmp_path, "two")  # cold cache, then warm (the unreadable photo alone is split: 0 and 1)
    for got in (cold, warm):
        assert sorted(got["features"]) == sorted(one.features) and list(got["errors"]) == [3] == list(one.errors)
        assert all(torch.equal(got["features"][i], one.features[i]) for i in one.features)
    # rank 0's progress: its own batch of 3, then rank 1's 5 at once; warm: 7 from the cache, then rank 1's one
    assert cold["ticks"] == [3, 5] and warm["ticks"] == [7, 1]
    cached = FeatureCache(tmp_path / "cache.db").get(
        sorted(file_digest(p) for p in paths if "bad" not in p),
        backbone_key(ddp_worker.tiny_backbone().config, "fp32", False, "pooled"), "pooled")
    assert len(cached) == 7


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


def test_train_nproc_starts_ranks_with_the_same_options(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from dkgzsl_app import train_launch
    from dkgzsl_app.cli import app

    seen = {}

    def fake_run_all(cmd, envs):
        seen["cmd"], seen["envs"] = cmd, envs
        return 0

    monkeypatch.setattr(train_launch, "run_all", fake_run_all)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    feats = tmp_path / "f"
    feats.mkdir()
    r = CliRunner().invoke(app, ["train", "--features", str(feats), "--out", str(tmp_path / "o"), "--nproc", "2",
                                 "--epochs", "3", "--device", "cpu", "--no-g-od-real"])
    assert r.exit_code == 0, r.output
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "dkgzsl_app", "train"] and "--nproc" not in cmd
    args = cmd[4:]
    assert args[args.index("--epochs") + 1] == "3" and args[args.index("--features") + 1] == str(feats)
    assert "--no-g-od-real" in args and args[args.index("--device") + 1] == "cpu"
    envs = seen["envs"]
    assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"]) for e in envs] == [("0", "0", "2"), ("1", "1", "2")]
    assert len({e["MASTER_PORT"] for e in envs}) == 1 and envs[0]["MASTER_ADDR"] == "127.0.0.1"

    monkeypatch.setenv("WORLD_SIZE", "2")  # already under torchrun: --nproc is a usage error
    r = CliRunner().invoke(app, ["train", "--features", str(feats), "--out", str(tmp_path / "o"), "--nproc", "2"])
    assert r.exit_code == 2 and "torchrun" in r.output


def test_run_all_stops_the_other_ranks_when_one_fails():
    """A failing rank ends the run with its exit status; the rank still waiting is stopped, not waited for."""
    from dkgzsl_app.train_launch import run_all

    cmd = [sys.executable, "-c", "import os, sys, time; sys.exit(3) if os.environ['RANK'] == '0' else time.sleep(60)"]
    envs = [{**os.environ, "RANK": str(r)} for r in range(2)]
    assert run_all(cmd, envs) == 3


@pytest.mark.slow
def test_cli_train_nproc_2_writes_one_bundle(tmp_path):
    """`dkgzsl train --nproc 2` end to end on a tiny feature folder: rank 0 writes the bundle and prints; a second
    run into the same folder without --resume fails with rank 0's one-line message (no torchrun report)."""
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
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "already holds a run" in again.stderr
    assert "Traceback" not in again.stderr and "ChildFailedError" not in again.stderr


@pytest.mark.slow
def test_cli_train_nproc_2_on_photos_splits_extraction_and_msdn(tmp_path):
    """`dkgzsl train --images --nproc 2 --method msdn` end to end (tf_efficientnet_lite0's packaged weights at
    64 px, 5 seen classes x 7 rendered photos, an empty cache): the 2 ranks share the extraction (rank 0 the
    first batch of 32 photos, rank 1 the other 3) and MSDN's batches; the features are one process's bit for
    bit (feature_min and feature_scale identical) and the bundle's weights within 1e-4 relative (measured 9.7e-6)."""
    from safetensors.torch import load_file

    from dkgzsl_app.models.classcsv import ClassTable, write_class_csv
    from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes, render

    classes = [c for c in demo_classes() if c.seen][:5] + [c for c in demo_classes() if not c.seen][:1]
    for c in classes[:5]:
        (tmp_path / "train" / c.name).mkdir(parents=True)
        for i in range(7):
            render(c, i, size=96).save(tmp_path / "train" / c.name / f"{i}.jpg", quality=85)
    write_class_csv(ClassTable([c.name for c in classes], None, list(ATTRIBUTES),
                               np.array([c.attributes() for c in classes], np.float32)), tmp_path / "classes.csv")
    bundles = {}
    for nproc in (2, 1):
        home = tmp_path / f"home{nproc}"
        cmd = [sys.executable, "-m", "dkgzsl_app", "train", "--images", str(tmp_path / "train"), "--attributes",
               str(tmp_path / "classes.csv"), "--backbone", "tf_efficientnet_lite0", "--image-size", "64",
               "--method", "msdn", "--epochs", "2", "--batch-size", "11", "--device", "cpu", "--threads", "1",
               "--out", str(tmp_path / f"run{nproc}"), "--json", "--nproc", str(nproc)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "DKGZSL_HOME": str(home), "HF_HUB_OFFLINE": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        bundles[nproc] = load_file(tmp_path / f"run{nproc}" / "bundle" / "model.safetensors")
        assert (home / "cache" / "features.sqlite3").exists()
    assert all(torch.equal(bundles[1][k], bundles[2][k]) for k in ("feature_min", "feature_scale"))
    assert worst(bundles[1], bundles[2]) < 1e-4
