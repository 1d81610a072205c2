"""The harder "scenes" style of the rendered demo set, and the plain set it must leave untouched."""
import hashlib
import io
import itertools
import math
import random

import numpy as np
import PIL
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from dkgzsl_app.cli import app
from dkgzsl_app.models.classcsv import read_class_csv
from dkgzsl_app.models.errors import UsageError
from dkgzsl_app.trainer.render import (ATTRIBUTES, DISTRACTOR_KINDS, SHAPES, _outline, demo_classes,
                                       distractor_outline, render, render_scene, renderer, write_test_photos,
                                       write_training_folder)

# sha256 over the raw pixels of render(c, s) for every 5th class and s in (0, 7), computed with the code
# before the scenes style was added; pixels depend on Pillow's filters, so the pin is per Pillow version.
PLAIN_PIXELS_SHA256 = {"13.0.0": "f19169c03a145874fdfd8905ac21d2b3d0d77835dba66cfef1cfb543041adf7d"}


def test_plain_renders_unchanged():
    if PIL.__version__ not in PLAIN_PIXELS_SHA256:
        pytest.skip(f"no pinned plain-set hash for Pillow {PIL.__version__}")
    h = hashlib.sha256()
    for c in demo_classes()[::5]:
        for s in (0, 7):
            h.update(np.asarray(render(c, s)).tobytes())
    assert h.hexdigest() == PLAIN_PIXELS_SHA256[PIL.__version__]
    assert renderer("plain") is render


def test_scene_is_deterministic_sized_and_not_plain():
    c = demo_classes()[3]
    a, b = np.asarray(render_scene(c, 7)), np.asarray(render_scene(c, 7))
    assert a.shape == (256, 256, 3) and a.dtype == np.uint8 and (a == b).all()
    assert np.asarray(render_scene(c, 7, size=128)).shape == (128, 128, 3)
    assert np.abs(a.astype(int) - np.asarray(render_scene(c, 8)).astype(int)).mean() > 10
    assert np.abs(a.astype(int) - np.asarray(render(c, 7)).astype(int)).mean() > 10
    same, (x0, y0, x1, y1) = render_scene(c, 7, with_box=True)
    assert (np.asarray(same) == a).all()
    side = max(x1 - x0, y1 - y0) / 256  # the object: radius 9-15% of the side, inside the photo
    assert 0.14 < side < 0.35 and 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256
    with pytest.raises(UsageError, match="plain, scenes"):
        renderer("busy")


def test_scene_folders_same_layout_as_plain_and_deterministic(tmp_path):
    for style in ("plain", "scenes"):
        write_training_folder(tmp_path / style, per_class=1, style=style)
    layout = {s: sorted(str(p.relative_to(tmp_path / s)) for p in (tmp_path / s).rglob("*")) for s in ("plain", "scenes")}
    assert layout["plain"] == layout["scenes"]
    seen = [c for c in demo_classes() if c.seen]
    assert sorted(p.name for p in (tmp_path / "scenes").iterdir() if p.is_dir()) == sorted(c.name for c in seen)
    table = read_class_csv(tmp_path / "scenes" / "classes.csv", attribute_names=ATTRIBUTES)
    assert table.names == [c.name for c in demo_classes()] and table.origins.count("unseen") == 10
    one = tmp_path / "scenes" / seen[0].name / "0000.jpg"
    assert Image.open(one).size == (256, 256)
    assert one.read_bytes() != (tmp_path / "plain" / seen[0].name / "0000.jpg").read_bytes()
    photos = write_test_photos(tmp_path / "t", per_class=1, seed=4, style="scenes")
    assert [p.name.split("__")[0] for p in photos] == [c.name for c in demo_classes()]
    for c, p in list(zip(demo_classes(), photos))[::16]:  # same seed, same bytes
        jpeg = io.BytesIO()
        render_scene(c, 4 * 1_000_003).save(jpeg, "JPEG", quality=90)
        assert p.read_bytes() == jpeg.getvalue()


N = 128  # raster side for the shape comparisons


def _mask(pts) -> np.ndarray:
    m = Image.new("L", (N, N), 0)
    ImageDraw.Draw(m).polygon(pts, fill=1)
    return np.asarray(m, bool)


def _axis_ratio(m: np.ndarray) -> float:
    """Smaller over larger eigenvalue of the mask's second-moment matrix: 1 for anything round."""
    ys, xs = np.nonzero(m)
    e = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
    return e[0] / e[1]


def _unit_area(shape: str) -> float:
    pts = _outline(shape, 0, 0, 1, 0)
    return 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1])))


def _best_fit_iou(m: np.ndarray, exclude: str = "") -> float:
    """The highest IoU of mask ``m`` with any class shape of the same area and centroid, over rotations
    in 5° steps (class shapes are centred on their centroid)."""
    ys, xs = np.nonzero(m)
    cx, cy, area = xs.mean() + 0.5, ys.mean() + 0.5, m.sum()
    best = 0.0
    for s in SHAPES:
        if s == exclude:
            continue
        r = math.sqrt(area / _unit_area(s))
        for angle in np.radians(np.arange(0, 120, 5)):  # every class shape repeats within 120° or 90° or 72°
            q = _mask(_outline(s, cx, cy, r, angle))
            best = max(best, (m & q).sum() / (m | q).sum())
    return best


def test_distractors_never_take_a_class_shape():
    # The bar: the most alike two distinct class shapes are to each other (circle vs square).
    class_masks = {s: _mask(_outline(s, N / 2, N / 2, 45, 0.3)) for s in SHAPES}
    bar = max(_best_fit_iou(m, exclude=s) for s, m in class_masks.items())
    assert 0.75 < bar < 0.95
    assert all(_axis_ratio(m) > 0.9 for m in class_masks.values())  # every class shape is round in moments
    assert not set(DISTRACTOR_KINDS) & set(SHAPES)
    rng = random.Random(0)
    worst = 0.0
    for kind, _ in itertools.product(DISTRACTOR_KINDS, range(8)):
        pts = distractor_outline(kind, N / 2, N / 2, 55, rng.uniform(0, 2 * math.pi), rng)
        assert max(math.hypot(x - N / 2, y - N / 2) for x, y in pts) <= 55 + 1e-6
        m = _mask(pts)
        assert _axis_ratio(m) < 0.65, kind  # elongated, unlike every class shape
        worst = max(worst, _best_fit_iou(m))
    assert worst < bar - 0.03  # each distractor is less like a class shape than a circle is like a square
    with pytest.raises(ValueError, match="unknown distractor"):
        distractor_outline("star", 0, 0, 1, 0, rng)


def test_cli_demo_scenes(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["demo", str(tmp_path / "s"), "--scenes", "--per-class", "1", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "48 scenes photos of 48 classes (10 unseen)" in r.output
    photos = sorted((tmp_path / "s").glob("*.jpg"))
    assert len(photos) == 48
    c = demo_classes()[0]
    jpeg = io.BytesIO()
    render_scene(c, 3 * 1_000_003).save(jpeg, "JPEG", quality=90)
    assert (tmp_path / "s" / f"{c.name}__0000.jpg").read_bytes() == jpeg.getvalue()
    r = runner.invoke(app, ["demo", str(tmp_path / "t"), "--scenes", "--training", "--per-class", "1"])
    assert r.exit_code == 0 and "1 scenes photos for each seen class" in r.output, r.output
    assert (tmp_path / "t" / "classes.csv").is_file()
