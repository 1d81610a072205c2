"""Feature extraction's CPU fast path (issue 17): uint8 photos from the loader normalised a batch at a time
(bit for bit the eval transform), and forward passes in side-by-side streams of fewer threads each."""
from pathlib import Path

import pytest
import torch

from dkgzsl_app import extract as ex
from dkgzsl_app.images import load_rgb

ASSETS = Path(__file__).parent / "assets"
PHOTOS = [str(ASSETS / "chelsea.jpg"), str(ASSETS / "coffee.jpg")]


@pytest.fixture(scope="module")
def backbone():
    from dkgzsl_app.models.backbone import create_backbone

    return create_backbone("tf_efficientnet_lite0")


def test_uint8_batches_give_the_eval_transforms_features_bit_for_bit(backbone):
    """One stream in the default layout (what train --images runs): the features of the float transform,
    photo by photo, exactly."""
    import math

    c = backbone.config
    short = int(math.floor(min(c.input_size[-2:]) / c.crop_pct))
    x = torch.stack([backbone.transform()(load_rgb(p, draft=(short, short))) for p in PHOTOS])
    want = ex._forward(backbone, x, torch.device("cpu"), "fp32", False)
    got = ex.extract(backbone, PHOTOS, "cpu", batch_size=2, workers=0, channels_last=False)
    for i in range(2):
        assert torch.equal(got.features[i], want[i])


def test_streams_keep_order_errors_and_counts_and_give_the_threads_back(backbone, tmp_path, monkeypatch):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    images = [PHOTOS[0], str(bad), PHOTOS[1], PHOTOS[0]]
    one = ex.extract(backbone, images, "cpu", batch_size=1, workers=0, channels_last=True)
    monkeypatch.setattr(ex, "forward_streams", lambda dev, channels_last: (2, 1))  # whatever this machine has
    threads, seen = torch.get_num_threads(), []
    two = ex.extract(backbone, images, "cpu", batch_size=1, workers=0, channels_last=True, on_batch=seen.append)
    assert torch.get_num_threads() == threads
    assert sorted(two.features) == [0, 2, 3] and list(two.errors) == [1] and sum(seen) == 4
    for i in (0, 2, 3):  # one thread instead of several: the same features within fp32 round-off
        torch.testing.assert_close(two.features[i], one.features[i], rtol=1e-4, atol=1e-5)
    assert torch.equal(two.features[0], two.features[3])


def test_a_failing_stream_raises_and_gives_the_threads_back(backbone, monkeypatch):
    monkeypatch.setattr(ex, "forward_streams", lambda dev, channels_last: (2, 1))

    def boom(*args, **kwargs):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(ex, "_forward", boom)
    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="forward failed"):
        ex.extract(backbone, PHOTOS, "cpu", batch_size=1, workers=0)
    assert torch.get_num_threads() == threads


def test_streams_on_the_cpu_in_channels_last_only(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert ex.forward_streams(torch.device("cpu"), True) == (2, 4)
    assert ex.forward_streams(torch.device("cpu"), False) == (1, 8)  # default layout: bit for bit as before
    assert ex.forward_streams(torch.device("cuda"), True) == (1, 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert ex.forward_streams(torch.device("cpu"), True) == (1, 1)


def test_the_head_runs_on_one_streams_threads_and_gives_them_back():
    threads, inside = torch.get_num_threads(), []
    with ex.stream_threads("cpu"):
        inside.append(torch.get_num_threads())
    assert inside == [ex.forward_streams(torch.device("cpu"), True)[1]]
    assert torch.get_num_threads() == threads
