"""The timm backbone built on the meta device with its weights assigned (issue 17): the same model bit for bit as
random init + copy (every parameter and buffer, BN running statistics included, and its outputs), no random
draws, the bundle's fine-tuned weights not shared with the model, and dkgzsl_app.load on one thread."""
import pytest
import torch

from dkgzsl_app.models import backbone as backbone_mod
from dkgzsl_app.models.backbone import backbone_from_state, create_backbone
from dkgzsl_app.models.errors import BundleError
from dkgzsl_app.models.parts import meta_leftovers

NAME = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def pair():
    return create_backbone(NAME, init="random"), create_backbone(NAME)


def same_model(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        assert sa[k].stride() == sb[k].stride(), k  # the same layout (contiguous), not only the same values
        assert torch.equal(sa[k], sb[k]), k
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in b.parameters())
    assert not meta_leftovers(b)
    assert a.training == b.training


def test_meta_build_is_the_random_init_model_bit_for_bit(pair):
    old, new = pair
    same_model(old.model, new.model)
    running = [k for k in new.model.state_dict() if "running_" in k or "num_batches_tracked" in k]
    assert len(running) == 3 * 49  # BN statistics are among what was compared
    assert int(new.model.state_dict()["bn1.num_batches_tracked"]) == 0
    assert not torch.equal(new.model.state_dict()["bn1.running_var"], torch.ones(32))  # ImageNet's, not init's
    assert new.config == old.config
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(old.model(x), new.model(x))
        for fa, fb in zip(old.features(x), new.features(x)):
            assert torch.equal(fa, fb)


def test_meta_build_draws_no_random_numbers():
    torch.manual_seed(123)
    create_backbone(NAME)
    after_meta = torch.rand(4)
    torch.manual_seed(123)
    expected = torch.rand(4)
    assert torch.equal(after_meta, expected)
    torch.manual_seed(123)
    create_backbone(NAME, init="random")
    assert not torch.equal(torch.rand(4), expected)  # the old path does draw: the check above can fail


def test_a_model_left_partly_on_the_meta_device_is_built_the_old_way(pair, monkeypatch):
    calls = []
    monkeypatch.setattr(backbone_mod, "_assigned", lambda model: calls.append(model) and False)
    fallback = create_backbone(NAME)
    assert len(calls) == 1 and not meta_leftovers(fallback.model)
    same_model(pair[0].model, fallback.model)


def test_finetuned_state_is_assigned_as_a_private_copy(pair):
    old, _ = pair
    state = {k: v.clone() for k, v in old.model.state_dict().items()}
    rebuilt = backbone_from_state(old.config, state)
    same_model(old.model, rebuilt.model)
    before = state["conv_stem.weight"].clone()
    with torch.no_grad():
        rebuilt.model.conv_stem.weight.add_(1.0)  # training the model must not change the bundle's copy
    assert torch.equal(state["conv_stem.weight"], before)


def test_finetuned_state_that_does_not_fit_is_a_bundle_error(pair):
    state = dict(pair[0].model.state_dict())
    state["conv_stem.weight"] = torch.zeros(1, 2, 3, 3)
    with pytest.raises(BundleError, match="do not fit"):
        backbone_from_state(pair[0].config, state)
    state = dict(pair[0].model.state_dict())
    del state["bn1.running_mean"]
    with pytest.raises(BundleError, match="do not fit"):
        backbone_from_state(pair[0].config, state)


def test_load_runs_on_one_thread_and_restores_torchs_threads(monkeypatch):
    import dkgzsl_app
    from dkgzsl_app import classify

    seen = []
    real = classify.bundle_backbone
    monkeypatch.setattr(classify, "bundle_backbone", lambda b: seen.append(torch.get_num_threads()) or real(b))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        clf = dkgzsl_app.load("demo-shapes", device="cpu", offline=True)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert not meta_leftovers(clf.backbone.model) and not meta_leftovers(clf.model)
