"""`dkgzsl push`, model cards, `models search` and download provenance, against the Hub-compatible server
on 127.0.0.1 (tests/hubserver.py): real huggingface_hub requests, nothing mocked."""
import json

import pytest
from typer.testing import CliRunner

from dkgzsl_app.cli import app
from dkgzsl_app.hub import BUNDLE_FILES
from hubserver import HubServer
from test_bundle import make_bundle
from test_train_images import TINY, photos  # noqa: F401  (fixture)

runner = CliRunner()
TOKEN = "hf_test_write_token"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with HubServer(root=tmp_path / "hub-server", tokens=(TOKEN,)) as server:
        import huggingface_hub.constants as c

        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(c, "ENDPOINT", server.url)  # read at import time
        monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))  # never the user's own login
        monkeypatch.setattr(c, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))
        yield server


def push(*args):
    r = runner.invoke(app, ["push", *map(str, args)])
    assert TOKEN not in r.output  # stdout and stderr: the token is never printed
    return r


def files_on(server, repo_id, rev="main"):
    repo = server.repos[repo_id]
    return repo.files(repo.resolve(rev))


def second_version(tmp_path):
    """Another bundle ("v2") whose config.json differs (calibration 0.5): a new version to push."""
    other, _, _ = make_bundle(tmp_path, "v2")
    data = json.loads((other / "config.json").read_text())
    data["calibration"] = 0.5
    (other / "config.json").write_text(json.dumps(data))
    return other


@pytest.mark.timeout(900)  # ~30 s on a quiet 2-core machine; trains on photos, so it slows most under load
def test_train_push_download_classify_round_trip(hub, photos, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--images", str(photos / "train"), "--attributes", str(photos / "classes.csv"),
                            "--out", str(out), "--json", *TINY])
    assert r.exit_code == 0, r.output
    bundle = out / "bundle"
    card = (bundle / "README.md").read_text()
    assert "dkgzsl train --images" in card and "--epochs 3" in card  # the command, as typed
    assert "| selected epoch | S (seen) |" in card and "- wall time: " in card and "- hardware: " in card
    assert "](ausuc.png)" in card and (bundle / "ausuc.png").is_file()  # the AUSUC plot (tests/test_card.py)
    local = runner.invoke(app, ["classify", str(photos / "test"), "--model", str(bundle), "--format", "json",
                                "--device", "cpu", "--workers", "0"])
    assert local.exit_code == 0, local.output
    r = push(bundle, "acme/tiny", "--json")
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    commit = done["commit"]
    assert done["created"] and len(commit) == 40 and done["classify"].startswith(f"dkgzsl classify --model hf-hub:acme/tiny@{commit}")
    on_hub = files_on(hub, "acme/tiny")
    assert sorted(on_hub) == sorted(BUNDLE_FILES + ["ausuc.png", ".gitattributes"])  # exactly the bundle's files
    from dkgzsl_app.slim import write_slim

    slim = tmp_path / "slim"
    write_slim(bundle, slim, card=False)  # push sends the slim bundle by default (--full: the folder's own files)
    for f in ("config.json", "model.safetensors", "classes.csv", "ausuc.png"):
        assert on_hub[f] == ((bundle if f == "ausuc.png" else slim) / f).read_bytes(), f
    pushed_card = on_hub["README.md"].decode()
    assert "dkgzsl train --images" in pushed_card  # the training record survives the refresh
    assert f"hf-hub:acme/tiny@COMMIT" in pushed_card and "pipeline_tag: zero-shot-image-classification" in pushed_card
    assert [m for m in hub.repos["acme/tiny"].messages.values() if m.startswith("dkgzsl push")] != []

    monkeypatch.setenv("DKGZSL_HOME", str(tmp_path / "fresh-home"))  # an empty Hub cache
    remote = runner.invoke(app, ["classify", str(photos / "test"), "--model", "hf-hub:acme/tiny", "--format", "json",
                                 "--device", "cpu", "--workers", "0"])
    assert remote.exit_code == 0, remote.output
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert [(x["path"], x["class"], x["score"], x["top_k"]) for x in a] == \
        [(x["path"], x["class"], x["score"], x["top_k"]) for x in b]
    assert {(x["model"], x["model_commit"]) for x in b} == {("hf-hub:acme/tiny", commit)}
    assert {(x["model"], x["model_commit"]) for x in a} == {(str(bundle), None)}
    r = runner.invoke(app, ["models", "info", "hf-hub:acme/tiny", "--json", "--offline"])
    assert r.exit_code == 0 and json.loads(r.stdout)["commit"] == commit
    r = runner.invoke(app, ["models", "info", "hf-hub:acme/tiny", "--offline"])
    assert f"commit: {commit}" in r.stdout


def test_push_needs_a_token(hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    folder, _, _ = make_bundle(tmp_path)
    r = push(folder, "acme/cats")
    assert r.exit_code == 1 and "hf auth login" in r.stderr and "HF_TOKEN" in r.stderr
    assert hub.requests == [] and "acme/cats" not in hub.repos


def test_a_refused_token_says_so_and_is_not_printed(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_secret_value")
    folder, _, _ = make_bundle(tmp_path)
    r = push(folder, "acme/cats")
    assert r.exit_code == 1 and "401" in r.stderr and "hf auth login" in r.stderr
    assert "hf_wrong_secret_value" not in r.output and "acme/cats" not in hub.repos


def test_refuses_a_bundle_that_does_not_load(hub, tmp_path):
    folder, _, _ = make_bundle(tmp_path)
    blob = bytearray((folder / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(blob))
    r = push(folder, "acme/cats")
    assert r.exit_code == 1 and "model.safetensors" in r.stderr and "acme/cats" not in hub.repos
    r = push(tmp_path / "nowhere", "acme/cats")
    assert r.exit_code == 1 and "nowhere" in r.stderr
    r = push(folder, "not-a-repo-id")
    assert r.exit_code == 2 and "ORG/NAME" in r.stderr


def test_existing_repository(hub, tmp_path):
    hub.repo("acme/other").push({"pytorch_model.bin": b"weights", "README.md": b"# someone else's"})
    folder, _, _ = make_bundle(tmp_path)
    r = push(folder, "acme/other")
    assert r.exit_code == 1 and "already exists" in r.stderr and "pytorch_model.bin" in r.stderr
    assert sorted(files_on(hub, "acme/other")) == ["README.md", "pytorch_model.bin"]  # untouched
    first = json.loads(push(folder, "acme/cats", "--json").stdout)
    again = push(folder, "acme/cats", "--json", "--commit-message", "again")  # ours: a new version goes on top
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["commit"] == first["commit"] and not json.loads(again.stdout)["created"]  # nothing changed
    other = second_version(tmp_path)
    third = json.loads(push(other, "acme/cats", "--json").stdout)
    assert third["commit"] != first["commit"] and hub.repos["acme/cats"].refs["main"] == third["commit"]


def test_network_down_mid_upload_publishes_nothing(hub, tmp_path):
    folder, _, _ = make_bundle(tmp_path)
    first = json.loads(push(folder, "acme/cats", "--json", "--full").stdout)["commit"]  # the folder's own files
    other = second_version(tmp_path)
    hub.cut_from = "commit"  # preupload answered, then the line drops while the commit is sent
    r = push(other, "acme/cats")
    assert r.exit_code == 1 and "Nothing was published" in r.stderr and "again" in r.stderr
    assert hub.repos["acme/cats"].refs["main"] == first and any("/commit/" in q for q in hub.requests)
    assert files_on(hub, "acme/cats")["config.json"] == (folder / "config.json").read_bytes()
    hub.cut_from = "create"  # a new repository: down from the start
    r = push(other, "acme/dogs")
    assert r.exit_code == 1 and "Nothing was published" in r.stderr and "acme/dogs" not in hub.repos
    hub.cut_from = "commit"
    r = push(other, "acme/birds")  # created, then the line drops during the commit: an empty repository
    assert r.exit_code == 1 and sorted(files_on(hub, "acme/birds")) == [".gitattributes"]
    hub.cut_from = None
    r = runner.invoke(app, ["models", "download", "hf-hub:acme/birds"])
    assert r.exit_code == 1 and "holds no dkgzsl bundle" in r.stderr  # nothing to mistake for a bundle
    assert push(other, "acme/birds").exit_code == 0  # the retry completes it
    r = push(other, "acme/cats", "--json")
    assert r.exit_code == 0 and hub.repos["acme/cats"].refs["main"] == json.loads(r.stdout)["commit"] != first


def test_branch_and_private(hub, tmp_path):
    folder, _, _ = make_bundle(tmp_path)
    main = json.loads(push(folder, "acme/cats", "--json").stdout)["commit"]
    other = second_version(tmp_path)
    r = push(other, "acme/cats", "--revision", "v2", "--json")
    assert r.exit_code == 0, r.output
    repo = hub.repos["acme/cats"]
    assert repo.refs["main"] == main and repo.refs["v2"] == json.loads(r.stdout)["commit"]
    r = runner.invoke(app, ["models", "info", "hf-hub:acme/cats@v2", "--json"])
    assert json.loads(r.stdout)["calibration"] == 0.5
    r = push(folder, "acme/secret", "--private")
    assert r.exit_code == 0 and hub.repos["acme/secret"].private


def test_search(hub, tmp_path, monkeypatch):
    folder, _, _ = make_bundle(tmp_path)
    for name in ("acme/zebras", "acme/otters"):
        assert push(folder, name).exit_code == 0
    hub.repo("acme/bert").push({"README.md": b"---\nlibrary_name: transformers\n---\n# not ours\n"})
    r = runner.invoke(app, ["models", "search", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert sorted(x["id"] for x in rows) == ["acme/otters", "acme/zebras"]
    assert {x["method"] for x in rows} == {"d3gzsl"} and all(x["last_modified"] for x in rows)
    assert any("/api/models" == q.split()[1] for q in hub.requests)
    r = runner.invoke(app, ["models", "search", "zebra"])
    assert r.exit_code == 0 and "hf-hub:acme/zebras" in r.stdout and "otters" not in r.stdout
    r = runner.invoke(app, ["models", "search", "--offline"])
    assert r.exit_code == 1 and "cannot" not in r.stdout and "needs the network" in r.stderr
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    r = runner.invoke(app, ["models", "search"])
    assert r.exit_code == 1 and "cannot be reached" in r.stderr


def test_push_with_user_classes(hub, tmp_path):
    import torch

    from dkgzsl_app.classes import add_classes, with_user_classes
    from dkgzsl_app.hub import HubRef, download_bundle
    from dkgzsl_app.models.bundle import load_bundle
    from userclass_helpers import tiny_bundle

    folder = tiny_bundle(tmp_path / "tiny")
    r = push(folder, "acme/tiny", "--with-user-classes")
    assert r.exit_code == 2 and "no user classes" in r.stderr
    add_classes(f"local-dir:{folder}", {"hot_cat": {"furry": 1, "hot": 1, "ceramic": 0, "size": 0.5}})
    r = push(folder, "acme/tiny", "--with-user-classes", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["user_classes"] == 1
    got = load_bundle(download_bundle(HubRef("acme/tiny")))
    view = with_user_classes(load_bundle(folder))
    assert got.config.class_names == view.config.class_names and got.origins[-1] == "user"
    assert got.config.provenance["user_classes"]["names"] == ["hot_cat"]
    x = torch.randn(7, got.config.feature_dim)
    assert torch.allclose(got.model.class_scores(x), view.model.class_scores(x), atol=1e-6)
    assert "User-added classes" in files_on(hub, "acme/tiny")["README.md"].decode()


def test_card_is_hub_metadata_from_the_bundle(tmp_path):
    from huggingface_hub import ModelCard

    from dkgzsl_app.card import build_card, write_card

    folder, _, cfg = make_bundle(tmp_path)
    card = ModelCard(build_card(folder, repo_id="acme/cats"))
    assert card.data.library_name == "dkgzsl" and card.data.pipeline_tag == "zero-shot-image-classification"
    assert card.data.license == "apache-2.0" and card.data.dkgzsl["method"] == "d3gzsl"
    text = card.text
    assert "`zebra`, `otter`, `eagle, bald`" in text and "**Unseen classes** (1): `okapi`" in text
    assert "`stripes`, `water`, `hooked bill`" in text
    assert "scores feature files" in text and "classify --model" not in text  # no backbone: no photos
    assert "training command is not recorded" in text and "not recorded in this bundle: data, hardware, wall time" in text
    record = {"command": "dkgzsl train --features f --out r", "wall_seconds": 12.0, "hardware": "a CPU",
              "validation": {"epoch": 3, "S": 0.9, "U": 0.5, "H": 0.6, "H_calibrated": 0.7, "gamma": 0.2}}
    write_card(folder, training=record, license="mit")
    text = (folder / "README.md").read_text()
    assert "| 3 | 0.900 | 0.500 | 0.600 | – | – | 0.700 | 0.2 | – | – |" in text  # an older record: no CZSL, AUSUC
    assert "dkgzsl train --features f --out r" in text
    refreshed = build_card(folder)  # the record and the license come back from the card's metadata
    assert "dkgzsl train --features f --out r" in refreshed and "license: mit" in refreshed
    data = json.loads((folder / "config.json").read_text())
    data["weights_sha256"] = "0" * 64  # other weights: the old record no longer applies
    (folder / "config.json").write_text(json.dumps(data))
    assert "dkgzsl train --features f" not in build_card(folder)
