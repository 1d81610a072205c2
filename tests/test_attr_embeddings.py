"""Attribute embeddings from a file (MSDN, MSDN++: `train --attribute-embeddings`) and the methods' own
default batch size."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from dkgzsl_app.cli import app
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.errors import DataError, UsageError
from dkgzsl_app.trainer.attr_embeddings import read_attribute_embeddings
from dkgzsl_app.trainer.data import save_feature_folder
from dkgzsl_app.trainer.train import train_bundle


def write(path, rows):
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_rows_are_matched_by_name_header_and_extra_rows_skipped(tmp_path):
    f = write(tmp_path / "e.csv", ["attribute,x,y,z", "hot,1,0,0", "unused,9,9,9", "furry,0,2,0.5"])
    got = read_attribute_embeddings(f, ["furry", "hot"])
    assert got.dtype == np.float32 and got.tolist() == [[0, 2, 0.5], [1, 0, 0]]
    tabs = write(tmp_path / "e.tsv", ["furry\t1\t2", "hot\t3\t4"])
    assert read_attribute_embeddings(tabs, ["hot", "furry"]).tolist() == [[3, 4], [1, 2]]


@pytest.mark.parametrize("rows, message", [
    (["furry,1,2"], "no vector for 1 of the model's 2 attributes: 'hot' (closest in the file: none)"),
    (["furry,1,2", "hott,1,2"], "'hot' (closest in the file: hott)"),
    (["furry,1,2", "hot,1"], "line 2: 'hot' has 1 values, the rows before it 2"),
    (["furry,1,2", "hot,1,abc"], "line 2: expected an attribute name and numbers"),
    (["furry,1,2", "furry,1,2"], "line 2: attribute 'furry' appears twice"),
    (["furry,1,nan", "hot,1,2"], "'furry' has a value that is not a finite number"),
    (["furry,0,0", "hot,1,2"], "the vector of 'furry' is all zeros"),
    (["name,a,b"], "no attribute vectors"),
])
def test_bad_files_name_the_problem(tmp_path, rows, message):
    with pytest.raises(DataError, match=None) as e:
        read_attribute_embeddings(write(tmp_path / "e.csv", rows), ["furry", "hot"])
    assert message in str(e.value) and str(tmp_path / "e.csv") in str(e.value)


def vectors_for(names, d=6, seed=3):
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=d) for n in names}


def test_msdn_starts_from_the_file_and_records_its_width(regions, tmp_path):
    vec = vectors_for(regions.attribute_names)
    f = write(tmp_path / "e.csv", [f"{n}," + ",".join(f"{x:.6f}" for x in v) for n, v in vec.items()])
    cfg = tiny_config(method="msdn", lr=1e-6, batch_size=32, epochs=1, select="none", attr_embed_dim=16,
                      attr_embeddings=str(f))
    out = train_bundle(regions, cfg, tmp_path / "run", threads=1)
    bundle = load_bundle(out.bundle_dir)
    assert bundle.config.options["attr_embed_dim"] == 6  # the file's width, not attr_embed_dim
    want = torch.nn.functional.normalize(torch.tensor(np.stack(list(vec.values())), dtype=torch.float32), dim=1)
    got = bundle.model.attr_embed.detach()
    assert torch.allclose(got, want, atol=1e-3)  # one epoch at lr 1e-6 barely moves them
    random_start = train_bundle(regions, tiny_config(method="msdn", lr=1e-6, batch_size=32, epochs=1, select="none",
                                                     attr_embed_dim=6), tmp_path / "run2", threads=1)
    assert not torch.allclose(load_bundle(random_start.bundle_dir).model.attr_embed.detach(), want, atol=0.1)


def test_a_method_without_attribute_embeddings_refuses_the_file(regions, tmp_path):
    f = write(tmp_path / "e.csv", [f"{n},1,2" for n in regions.attribute_names])
    with pytest.raises(UsageError, match="d3gzsl does not embed attributes"):
        train_bundle(regions, tiny_config(method="d3gzsl", attr_embeddings=str(f)), tmp_path / "run", threads=1)


def test_cli_batch_size_defaults_to_the_methods_own(regions, tmp_path):
    save_feature_folder(regions, tmp_path / "feats")
    args = ["--epochs", "1", "--lr", "1e-3", "--select", "none", "--threads", "1", "--json"]
    for method, want in (("msdn", 50), ("dkgzsl", 256)):
        r = CliRunner().invoke(app, ["train", "--features", str(tmp_path / "feats"), "--out", str(tmp_path / method),
                                     "--method", method, *args, *(["--hidden-dim", "32", "--embed-dim", "16"]
                                                                  if method == "dkgzsl" else [])])
        assert r.exit_code == 0, r.output
        bundle = load_bundle(json.loads(r.output.strip().splitlines()[-1])["bundle"])
        assert bundle.config.provenance["train_config"]["batch_size"] == want
    r = CliRunner().invoke(app, ["train", "--features", str(tmp_path / "feats"), "--out", str(tmp_path / "bad"),
                                 "--method", "d3gzsl", "--attribute-embeddings", str(tmp_path / "missing.csv"), *args])
    assert r.exit_code != 0 and "does not embed attributes" in r.output and "Traceback" not in r.output
