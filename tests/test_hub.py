"""Hub bundles through huggingface_hub against a hub-compatible server on 127.0.0.1 (tests/hubserver.py)."""
import json

import pytest
from typer.testing import CliRunner

import dkgzsl_app
from dkgzsl_app.cli import app
from dkgzsl_app.hub import HubRef, download_bundle, parse_hub_source
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.models.errors import BundleError
from hubserver import HubServer
from test_bundle import make_bundle
from test_classify import ASSETS, bundle_dir  # noqa: F401  (fixture)

runner = CliRunner()


@pytest.fixture
def hub(monkeypatch, tmp_path, bundle_dir):  # noqa: F811
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        import huggingface_hub.constants as c

        monkeypatch.setattr(c, "ENDPOINT", server.url)  # read at import time
        monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
        repo = server.repo("acme/cats")
        server.first = repo.push_folder(bundle_dir)
        small, _, _ = make_bundle(tmp_path, "small")
        server.second = repo.push_folder(small, ref="v2")
        yield server


def test_parse_sources():
    assert parse_hub_source("hf-hub:acme/cats") == HubRef("acme/cats", "main")
    assert parse_hub_source("hf-hub:acme/cats@v2") == HubRef("acme/cats", "v2")
    with pytest.raises(BundleError, match="hf-hub:ORG/NAME"):
        parse_hub_source("hf-hub:cats")


def test_download_pins_the_commit_and_loads(hub):
    folder = download_bundle(HubRef("acme/cats"))
    assert folder.name == hub.first  # snapshot folder = the commit the revision resolved to
    assert load_bundle(folder).config.backbone.name == "tf_efficientnet_lite0"
    v2 = download_bundle(HubRef("acme/cats", "v2"))
    assert v2.name == hub.second and load_bundle(v2).config.num_classes == 4
    assert any(r.startswith("GET /acme/cats/resolve/") for r in hub.requests)


def test_offline_uses_the_cache_only(hub):
    with pytest.raises(BundleError, match="not in the local cache and --offline"):
        download_bundle(HubRef("acme/cats"), offline=True)
    download_bundle(HubRef("acme/cats"))
    n = len(hub.requests)
    assert download_bundle(HubRef("acme/cats"), offline=True).name == hub.first
    assert len(hub.requests) == n  # no network


def test_errors_name_the_problem(hub):
    with pytest.raises(BundleError, match="no such model repository"):
        download_bundle(HubRef("acme/dogs"))
    with pytest.raises(BundleError, match="revision 'v9' does not exist"):
        download_bundle(HubRef("acme/cats", "v9"))


def test_unreachable_hub(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    with pytest.raises(BundleError, match="cannot be reached|download failed"):
        download_bundle(HubRef("acme/cats"))


def test_wrong_format_version_on_the_hub(hub, tmp_path):
    folder, _, _ = make_bundle(tmp_path, "future")
    data = json.loads((folder / "config.json").read_text())
    data["format_version"] = 7
    (folder / "config.json").write_text(json.dumps(data))
    hub.repo("acme/future").push_folder(folder)
    with pytest.raises(BundleError, match="format version 7"):
        load_bundle(download_bundle(HubRef("acme/future")))


def test_classify_and_models_commands(hub):
    clf = dkgzsl_app.load("hf-hub:acme/cats", device="cpu")
    assert clf.classify([str(ASSETS / "coffee.jpg")], workers=0)[0].top
    r = runner.invoke(app, ["models", "list", "--json"])
    rows = json.loads(r.stdout)
    assert {(row["model"], row["commit"]) for row in rows} == {("hf-hub:acme/cats", hub.first)}
    r = runner.invoke(app, ["models", "info", "hf-hub:acme/cats@v2", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["classes"] == 4
    r = runner.invoke(app, ["models", "path", "hf-hub:acme/cats", "--offline"])
    assert r.exit_code == 0 and r.stdout.strip().endswith(hub.first)
    r = runner.invoke(app, ["models", "download", "hf-hub:acme/nothing"])
    assert r.exit_code == 1 and "no such model repository" in r.stderr
    r = runner.invoke(app, ["classify", str(ASSETS / "coffee.jpg"), "--model", "hf-hub:acme/cats", "--offline",
                            "--format", "json", "--device", "cpu"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["class"]
