"""classify at scale (issue 18): rows streamed as chunks finish, --resume after a crash or SIGKILL (byte for
byte the uninterrupted run's file), --files-from, --shard K/N with dkgzsl merge, and torchrun."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dkgzsl_app.classify import Guess, Prediction
from dkgzsl_app.cli import app
from dkgzsl_app.models.errors import DataError, UsageError
from dkgzsl_app.output import render
from dkgzsl_app.stream import ResultWriter, open_resume, read_file_list, run_file, shard_range

runner = CliRunner()
CHUNK = "5"


# --- the writer and the resume checks, without a model ----------------------------------------------------

def fake_preds(n: int, start: int = 0) -> list:
    out = []
    for i in range(start, start + n):
        if i % 4 == 3:
            out.append(Prediction(f"dir/odd, \"name\"\n{i}.jpg", error="truncated or corrupt"))
        else:
            out.append(Prediction(f"dir/p{i}.jpg", [Guess("zebra", "unseen", 0.5 + i / 100, 0.6),
                                                     Guess("horse", "seen", 0.1, 0.2)], precision="fp32"))
    return out


IDENTITY = {"format": None, "model": "m", "weights_sha256": "w" * 64, "classes_sha256": "c" * 64,
            "calibration": 0.5, "top_k": 2, "precision": "fp32", "shard": None, "chunk": 4}


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_streamed_parts_equal_render(tmp_path, fmt):
    preds = fake_preds(10)
    out = tmp_path / f"r.{fmt}"
    w = ResultWriter(fmt, out, {**IDENTITY, "format": fmt})
    for a in range(0, 10, 3):
        w.write(preds[a:a + 3])
    w.close()
    assert out.read_text(encoding="utf-8") == render(preds, fmt)
    if fmt == "json":
        assert json.loads(out.read_text()) and not run_file(out).exists()  # whole-file form: no run record
    else:
        run = json.loads(run_file(out).read_text())
        assert run["complete"] and run["rows"] == 10 and run["failed"] == 2
    empty = tmp_path / f"e.{fmt}"
    w = ResultWriter(fmt, empty)
    w.close()
    assert empty.read_text() == render([], fmt)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_torn_last_row_is_cut_at_every_byte(tmp_path, fmt):
    """Cut the file: resume keeps exactly the complete rows (quoted newlines in CSV paths too),
    and appending the rest gives the whole file again."""
    preds = fake_preds(8)
    ident = {**IDENTITY, "format": fmt}
    whole = render(preds, fmt).encode("utf-8")
    out = tmp_path / f"r.{fmt}"
    ResultWriter(fmt, out, ident).close()  # the run record
    record = run_file(out).read_bytes()
    ends = [len(render(preds[:i], fmt).encode("utf-8")) for i in range(1, 9)]  # where each row ends
    # every byte of the last row (an error row whose path has a quote, a comma and a newline), and a spread
    # of cuts before it (each cut rewrites the file: slow on some file systems)
    cuts = list(range(ends[-2], len(whole) + 1, 1 if fmt == "csv" else 4)) + [len(whole) - 1] + random.Random(fmt).sample(range(ends[-2]), 25) + [0, ends[0]]
    for cut in cuts:
        out.write_bytes(whole[:cut])
        run_file(out).write_bytes(record)
        existing = open_resume(out, ident)
        rows = sum(1 for e in ends if e <= cut)
        assert existing.rows == rows and out.stat().st_size == existing.end, cut
        if cut % 7 and cut != len(whole) - 1:
            continue  # finishing the file (fsync) at every byte would be slow; a spread of cuts does it
        w = ResultWriter(fmt, out, ident, existing)
        w.write(preds[rows:])
        w.close()
        assert out.read_bytes() == whole, cut


def test_resume_refuses_another_run_and_damage(tmp_path):
    out = tmp_path / "r.jsonl"
    ident = {**IDENTITY, "format": "jsonl"}
    w = ResultWriter("jsonl", out, ident)
    w.write(fake_preds(3))
    for key, value, words in [("calibration", 0.25, "calibration (γ): 0.5 in the file, 0.25 now"),
                              ("weights_sha256", "x" * 64, "model weights (m → m)"), ("top_k", 5, "--top-k"),
                              ("chunk", 8, "--chunk-size")]:
        with pytest.raises(UsageError, match="different run") as e:
            open_resume(out, {**ident, key: value})
        assert words in str(e.value)
    with pytest.raises(UsageError, match="CSV or JSON Lines"):
        open_resume(out, {**ident, "format": "json"})
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + "garbage\n" + lines[2])
    with pytest.raises(DataError, match="row 2 is not a results row"):
        open_resume(out, ident)
    run_file(out).unlink()
    out.write_text("".join(lines))
    with pytest.raises(UsageError, match="no run record"):
        open_resume(out, ident)
    out.write_text("")  # killed before its first row: a fresh start needs no record
    assert open_resume(out, ident) is None


def test_file_lists(tmp_path, monkeypatch):
    plain = tmp_path / "list.txt"
    plain.write_text("a.jpg\n\nsub dir/b, c.jpg\r\n")
    assert read_file_list(str(plain)) == ["a.jpg", "sub dir/b, c.jpg"]
    table = tmp_path / "list.csv"
    table.write_text("\ufeffid,path,label\n1,x.jpg,cat\n2,\"y, z.jpg\",dog\n3,,none\n")
    assert read_file_list(str(table)) == ["x.jpg", "y, z.jpg"]
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("s1.jpg\ns2.jpg\n"))
    assert read_file_list("-") == ["s1.jpg", "s2.jpg"]
    with pytest.raises(UsageError, match="cannot read the list"):
        read_file_list(str(tmp_path / "nope.txt"))


def test_shard_ranges_cover_whole_chunks_in_order():
    for count in (0, 1, 7, 48, 101):
        for n in (1, 2, 3, 7):
            parts = [shard_range(count, k, n, 5) for k in range(1, n + 1)]
            assert parts[0][0] == 0 and parts[-1][1] == count
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert all(a % 5 == 0 for a, _ in parts)


# --- through the CLI, on the bundled demo model ------------------------------------------------------------

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """16 demo photos (every third class), a broken one; a feature cache warmed once for the whole module."""
    from dkgzsl_app.trainer.render import write_test_photos

    root = tmp_path_factory.mktemp("stream")
    photos = root / "photos"
    for i, p in enumerate(write_test_photos(photos, per_class=1, seed=3)):
        if i % 3:
            p.unlink()
    (photos / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    home = root / "home"
    env = {**os.environ, "DKGZSL_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "dkgzsl_app", "classify", str(photos), "-f", "jsonl", "--device", "cpu",
                        "--workers", "0"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 3, r.stderr  # the broken photo
    return {"photos": photos, "home": home, "root": root}


@pytest.fixture
def cli(shared, monkeypatch):
    monkeypatch.setenv("DKGZSL_HOME", str(shared["home"]))

    def run(*args, code=None):
        r = runner.invoke(app, ["classify", *map(str, args), "--device", "cpu", "--workers", "0", "--chunk-size",
                                CHUNK])
        if code is not None:
            assert r.exit_code == code, r.output
        return r
    return run


def test_cli_streams_resumes_and_refuses(cli, shared, tmp_path):
    photos = shared["photos"]
    ref = tmp_path / "ref.jsonl"
    r = cli(photos, photos / "gone.jpg", "-o", ref, code=3)
    assert "18 photo(s): 16 classified, " in r.stderr and "2 failed" in r.stderr
    rows = [json.loads(line) for line in ref.read_text().splitlines()]
    assert [Path(x["path"]).name for x in rows[-2:]] == ["zz_broken.jpg", "gone.jpg"]  # missing files last
    assert json.loads(run_file(ref).read_text())["complete"]
    whole = ref.read_bytes()
    rng = random.Random(18)
    out = tmp_path / "cut.jsonl"
    for cut in [0, 5, len(whole) - 3, len(whole)] + rng.sample(range(len(whole)), 3):
        out.write_bytes(whole[:cut])
        shutil.copy(run_file(ref), run_file(out))
        r = cli(photos, photos / "gone.jpg", "-o", out, "--resume", code=3)
        assert out.read_bytes() == whole, cut
    r = cli(photos, "-o", out, "--resume", "--calibration", "0.25", code=2)
    assert "cannot resume" in r.stderr and "calibration" in r.stderr and out.read_bytes() == whole
    r = cli(os.path.relpath(photos), "-o", out, "--resume", code=2)  # the same photos, named otherwise
    assert "none of its 18 row(s)" in r.stderr and out.read_bytes() == whole
    r = cli(photos, "-o", tmp_path / "x.json", "--resume", code=2)
    assert "--resume carries on" in r.stderr
    # --files-from: a plain list, and a results CSV (its path column) give the folder's rows
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"{x['path']}\n" for x in rows))
    via_list = tmp_path / "list.jsonl"
    cli("--files-from", listed, "-o", via_list, code=3)
    assert via_list.read_bytes() == whole
    as_csv = tmp_path / "ref.csv"
    cli(photos, photos / "gone.jpg", "-o", as_csv, code=3)
    via_csv = tmp_path / "csvlist.jsonl"
    cli("--files-from", as_csv, "-o", via_csv, code=3)
    assert via_csv.read_bytes() == whole
    assert "no photos given" in cli(code=2).stderr


def test_shards_merge_to_the_unsharded_file(cli, shared, tmp_path):
    photos = shared["photos"]
    ref = tmp_path / "ref.csv"
    cli(photos, photos / "gone.jpg", "-o", ref, code=3)
    shards = []
    for k in (3, 1, 2):
        s = tmp_path / f"s{k}.csv"
        cli(photos, photos / "gone.jpg", "-o", s, "--shard", f"{k}/3")
        shards.append(s)
    assert len(shards[0].read_text().splitlines()) > 1  # the missing file's row is in the last shard
    merged = tmp_path / "merged.csv"
    r = runner.invoke(app, ["merge", str(merged), *map(str, shards)])
    assert r.exit_code == 0, r.output
    assert merged.read_bytes() == ref.read_bytes()
    assert {k: v for k, v in json.loads(run_file(merged).read_text()).items() if k != "dkgzsl"} == \
        {k: v for k, v in json.loads(run_file(ref).read_text()).items() if k != "dkgzsl"}
    r = runner.invoke(app, ["merge", str(merged), *map(str, shards[:2])])
    assert r.exit_code == 2 and "every shard" in r.stderr
    run = json.loads(run_file(shards[0]).read_text())
    run_file(shards[0]).write_text(json.dumps({**run, "complete": False}))
    r = runner.invoke(app, ["merge", str(merged), *map(str, shards)])
    assert r.exit_code == 2 and "not complete" in r.stderr
    run_file(shards[0]).write_text(json.dumps({**run, "calibration": 0.3}))
    r = runner.invoke(app, ["merge", str(merged), *map(str, shards)])
    assert r.exit_code == 2 and "does not belong" in r.stderr and "calibration" in r.stderr
    assert "--shard 4/3" in cli(photos, "--shard", "4/3", code=2).stderr


# --- SIGKILL at random points, then --resume ----------------------------------------------------------------

def _classify_cmd(shared, out, *extra):
    return [sys.executable, "-m", "dkgzsl_app", "classify", str(shared["photos"]), "-o", str(out), "--device", "cpu",
            "--workers", "0", "--chunk-size", "2", *extra]


def _env(shared):
    # the same thread count for every process: the head's last digit may depend on it
    return {**os.environ, "DKGZSL_HOME": str(shared["home"]), "OMP_NUM_THREADS": "2"}


def kill_and_resume(shared, tmp_path, trials: int, seed: int):
    env = _env(shared)
    ref = tmp_path / "ref.jsonl"
    assert subprocess.run(_classify_cmd(shared, ref), env=env, capture_output=True, timeout=600).returncode == 3
    whole = ref.read_bytes()
    lines = whole.count(b"\n")
    rng = random.Random(seed)
    torn = 0
    for trial in range(trials):
        out = tmp_path / f"t{trial}.jsonl"
        for _ in range(2):  # killed twice (the second time while resuming), then finished
            p = subprocess.Popen(_classify_cmd(shared, out, "--resume"), env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            target = rng.randint(0, lines)  # kill once the file has this many rows, or at once if 0
            deadline = time.monotonic() + 120
            while p.poll() is None and time.monotonic() < deadline:
                if target == 0 or (out.exists() and out.read_bytes().count(b"\n") >= target):
                    time.sleep(rng.random() * 0.05)  # somewhere inside the next chunk
                    break
                time.sleep(0.002)
            p.send_signal(signal.SIGKILL)
            p.wait()
            torn += out.exists() and not out.read_bytes().endswith(b"\n") and out.stat().st_size > 0
        r = subprocess.run(_classify_cmd(shared, out, "--resume"), env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 3, r.stderr
        assert out.read_bytes() == whole, f"trial {trial}"
    return torn


def test_sigkill_then_resume_is_identical_short(shared, tmp_path):
    kill_and_resume(shared, tmp_path, trials=2, seed=1)


@pytest.mark.slow
def test_sigkill_then_resume_is_identical_many(shared, tmp_path):
    kill_and_resume(shared, tmp_path, trials=12, seed=2)


# --- torchrun: two gloo processes write what one does ------------------------------------------------------

@pytest.mark.slow
def test_torchrun_two_processes_equal_one(shared, tmp_path):
    env = {**_env(shared), "OMP_NUM_THREADS": "1"}  # torchrun's own default per rank
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert subprocess.run(_classify_cmd(shared, one), env=env, capture_output=True, timeout=600).returncode == 3
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dkgzsl_app",
           *_classify_cmd(shared, two)[3:]]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "17 photo(s): 16 classified, " in r.stderr and "1 failed" in r.stderr  # exit 3: the broken photo
    assert two.read_bytes() == one.read_bytes()
    assert not list(tmp_path.glob("two.jsonl.part-*"))  # rank 0 removed the parts after merging
