"""Decoding says nothing on stderr: Pillow's warnings (decompression bomb below our 100 MP limit, corrupt
EXIF) are silenced in the main process and in DataLoader workers, and refusals quote our limit."""
import struct
import subprocess
import sys
import warnings
import zlib

import pytest
from PIL import Image, ImageOps

from dkgzsl_app.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_rgb


def blank_png(path, w, h):
    """A 1-bit black PNG of w×h pixels, a few KB on disk whatever its size (rows of zeros compress)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), b"\x00" * ((w + 7) // 8 + 1)  # filter byte + packed bits
    data = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bombs")
    assert Image.MAX_IMAGE_PIXELS < 95e6 < DEFAULT_MAX_PIXELS  # Pillow warns from here; we allow up to 100 MP
    return {"95": blank_png(d / "95mp.png", 10_000, 9_500),      # between Pillow's warning and our limit
            "150": blank_png(d / "150mp.png", 12_500, 12_000),   # over ours, under Pillow's hard error
            "200": blank_png(d / "200mp.png", 20_000, 10_000)}   # over Pillow's hard error (179 MP)


def test_under_our_limit_loads_without_a_decompression_bomb_warning(bombs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rgb(bombs["95"]).size == (10_000, 9_500)


@pytest.mark.parametrize("name,pixels", [("150", "12500×12000"), ("200", "200,000,000")])
def test_over_our_limit_the_error_quotes_our_limit(bombs, name, pixels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageLoadError) as e:
            load_rgb(bombs[name])
    assert str(e.value) == f"too large: {pixels} pixels is over the 100,000,000-pixel limit"
    assert "178956970" not in str(e.value) and "89478485" not in str(e.value)


WORKERS = """
import sys, torch
from torch.utils.data import DataLoader
from dkgzsl_app.extract import PhotoDataset, collate
ds = PhotoDataset(sys.argv[1:], transform=lambda im: torch.zeros(1))
(x, ok, errors), = DataLoader(ds, batch_size=len(ds), num_workers=1, collate_fn=collate)
print(ok, errors)
"""


def test_dataloader_workers_print_nothing(bombs, tmp_path):
    """In a fresh interpreter, as the CLI runs: workers write straight to the inherited stderr."""
    bad_exif = tmp_path / "bad-exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (0, 128, 0)).save(bad_exif, exif=exif)
    raw = bytearray(bad_exif.read_bytes())
    at = raw.find(b"Exif\x00\x00")
    raw[at + 14:at + 30] = b"\xff" * 16  # an IFD entry count and offsets that point past the data
    bad_exif.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # what Pillow says about it on its own
        with Image.open(bad_exif) as im:
            ImageOps.exif_transpose(im)

    r = subprocess.run([sys.executable, "-W", "default", "-c", WORKERS, str(bombs["95"]), str(bombs["150"]),
                        str(bad_exif)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.strip() == "[0, 2] {1: 'too large: 12500×12000 pixels is over the 100,000,000-pixel limit'}"


def test_a_damaged_file_of_a_known_format_is_called_corrupt_not_not_an_image(tmp_path):
    good = tmp_path / "good.png"
    Image.effect_noise((64, 64), 40).save(good)
    raw = bytearray(good.read_bytes())
    raw[20] ^= 0xFF  # inside IHDR: Pillow's PNG plugin gives up, so does every other
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ImageLoadError, match=r"^truncated or corrupt \(a PNG file"):
        load_rgb(bad)


def test_permission_denied_is_not_called_corrupt(tmp_path, monkeypatch):
    """Runs as root too (where chmod 0 does not stop reading): the OS error is simulated."""
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(path)

    def denied(fp, *a, **k):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageLoadError, match="^permission denied"):
        load_rgb(path)
