"""Odd and broken photos, and odd folders: each case decodes correctly or fails with a clear reason."""
import os

import numpy as np
import pytest
from PIL import Image

from dkgzsl_app.images import ImageLoadError, collect_images, load_rgb


def save(im, path, **kw):
    im.save(path, **kw)
    return path


def test_plain_jpeg(tmp_path):
    im = load_rgb(save(Image.new("RGB", (32, 24), (200, 30, 30)), tmp_path / "a.jpg"))
    assert im.mode == "RGB" and im.size == (32, 24)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")  # pure red in CMYK
    r, g, b = load_rgb(path).getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    a = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    path = save(Image.fromarray(a), tmp_path / "grey16.png")
    assert Image.open(path).mode.startswith("I")
    r, g, b = load_rgb(path).getpixel((0, 0))
    assert r == g == b and 125 <= r <= 130


def test_palette_with_transparency_on_white(tmp_path):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    path = save(im, tmp_path / "pal.png", transparency=0)
    out = load_rgb(path)
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((5, 5)) == (255, 255, 255)


def test_rgba_is_composited(tmp_path):
    path = save(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), tmp_path / "alpha.png")
    r, g, b = load_rgb(path).getpixel((1, 1))
    assert r == g == b and 120 <= r <= 135  # half-transparent black over white


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = save(im, tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(path).size == (20, 40)


def test_truncated_jpeg(tmp_path):
    path = save(Image.effect_noise((256, 256), 50).convert("RGB"), tmp_path / "full.jpg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_rgb(cut)


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file"):
        load_rgb(tmp_path / "empty.jpg")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("shopping list")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_rgb(tmp_path / "notes.jpg")


def test_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = save(Image.new("RGB", (300, 200)), tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="300×200 pixels is over the 10,000-pixel limit"):
        load_rgb(path, max_pixels=10_000)


def test_draft_decodes_huge_jpeg_smaller(tmp_path):
    path = save(Image.new("RGB", (4000, 3000), (10, 20, 30)), tmp_path / "huge.jpg")
    im = load_rgb(path, draft=(448, 448))
    assert 448 <= min(im.size) < 3000


def test_collect_folders_globs_and_oddities(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "sub/c.jpeg"):
        save(Image.new("RGB", (4, 4)), photos / name)
    (photos / "readme.txt").write_text("not a photo")
    os.symlink(photos, photos / "sub" / "loop")  # a symlink loop
    os.symlink(tmp_path / "gone.jpg", photos / "dangling.jpg")
    (tmp_path / "empty").mkdir()

    flat = collect_images([str(photos)])
    assert [p.name for p in flat.images] == ["a.PNG", "b.jpg"]
    assert any("broken symbolic link" in w for w in flat.warnings)

    deep = collect_images([str(photos), str(photos / "b.jpg")], recursive=True)
    assert sorted(p.name for p in deep.images) == ["a.PNG", "b.jpg", "c.jpeg"]  # duplicates dropped
    assert any("symbolic link loop" in w for w in deep.warnings)

    globbed = collect_images([str(photos / "*.jpg"), str(tmp_path / "nothing-*.png")])
    assert [p.name for p in globbed.images] == ["b.jpg"]
    assert any("matches no images" in w for w in globbed.warnings)

    odd = collect_images([str(tmp_path / "empty"), str(tmp_path / "missing")])
    assert odd.images == []
    assert any("no images found" in w for w in odd.warnings) and any("no such file" in w for w in odd.warnings)
