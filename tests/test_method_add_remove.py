"""Every method: adding a class from its attribute vector gives it a column, and removing it again restores
the built-in classes' scores exactly (MSDN's own test: test_msdn.py; D3GZSL's through the classifier:
test_userclasses.py)."""
import shutil

import pytest
import torch

from conftest import tiny_config
from dkgzsl_app.classes import add_classes, list_user_classes, remove_classes, with_user_classes
from dkgzsl_app.models.bundle import load_bundle
from dkgzsl_app.trainer.train import train_bundle


def region_bundle(regions, tmp_path, **cfg):
    out = train_bundle(regions, tiny_config(select="none", attn_dim=16, epochs=3, **cfg), tmp_path / "run", threads=1)
    return shutil.copytree(out.bundle_dir, tmp_path / "b"), torch.from_numpy(regions.features[regions.test_unseen[:8]])


def ce_gzsl_bundle(tmp_path):
    from test_cegzsl import ce_bundle

    folder = ce_bundle(tmp_path / "b")
    return folder, torch.rand(8, 24, generator=torch.Generator().manual_seed(1))


CASES = {
    "dkgzsl (regions)": lambda regions, tmp: region_bundle(regions, tmp, method="dkgzsl"),
    "dkgzsl on ce-gzsl (regions)": lambda regions, tmp: region_bundle(regions, tmp, method="dkgzsl",
                                                                      generator="ce-gzsl"),
    "d3gzsl on ce-gzsl": lambda regions, tmp: ce_gzsl_bundle(tmp),
}


@pytest.mark.parametrize("case", list(CASES))
def test_add_then_remove_restores_scores_exactly(case, regions, tmp_path):
    folder, x = CASES[case](regions, tmp_path)
    src, base = f"local-dir:{folder}", load_bundle(folder)
    k, names = len(base.config.class_names), base.config.attribute_names

    def scores():
        view = with_user_classes(load_bundle(folder))
        with torch.no_grad():
            return view, view.model.class_scores(x, view.config.head.tau_student)

    _, p0 = scores()
    new = {a: float(i % 2) for i, a in enumerate(names)}
    assert add_classes(src, {"new_one": new}) == ["new_one"]
    view, p1 = scores()
    assert view.config.class_names[-1] == "new_one" and view.origins[-1] == "user" and p1.shape == (len(x), k + 1)
    assert torch.allclose(p1.sum(1), torch.ones(len(x)), atol=1e-5)
    remove_classes(src, ["new_one"])
    view, p = scores()
    assert list_user_classes(src) == [] and view.config.class_names == base.config.class_names
    assert torch.equal(p, p0)
