"""Finding and decoding photos robustly: one bad file is a warning, never the end of a run.

``collect_images`` turns files, folders and globs into image paths (skipping what is not an image,
surviving symlink loops); ``load_rgb`` decodes one file into an 8-bit RGB PIL image whatever its mode
(CMYK, 16-bit, palette, alpha, EXIF-rotated), or raises ``ImageLoadError`` with a readable reason.
Pillow's own warnings while decoding never reach the terminal (see ``load_rgb``).
"""
from __future__ import annotations

import glob
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                            ".pgm", ".pbm", ".jfif"})
DEFAULT_MAX_PIXELS = 100_000_000  # ~10k × 10k; larger files are refused (decompression-bomb guard)
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels become white


class ImageLoadError(Exception):
    """A photo could not be decoded; the message says why in a few words."""


@dataclass
class Collected:
    images: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)  # named explicitly but absent (also in warnings)


def collect_images(inputs: list[str], recursive: bool = False) -> Collected:
    """Expand files, folders (``recursive``: their sub-folders too) and globs into image paths.

    Files without an image suffix given inside folders are skipped silently; ones named explicitly are
    kept (decoding decides). Missing paths, empty folders and symlink loops give warnings. Order is
    sorted within each input and duplicates are dropped.
    """
    out, seen = Collected(), set()

    def add(p: Path) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.images.append(p)

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = _walk(path, recursive, out.warnings)
            if not found:
                out.warnings.append(f"{path}: no images found" + ("" if recursive else " (use --recursive for sub-folders)"))
            for p in found:
                add(p)
        elif path.is_file():
            add(path)
        elif glob.has_magic(raw):
            matches = sorted(Path(m) for m in glob.glob(raw, recursive=recursive))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                out.warnings.append(f"{raw}: the pattern matches no images")
            for p in files:
                add(p)
        elif path.is_symlink():
            out.warnings.append(f"{path}: broken symbolic link")
            out.missing.append(path)
        else:
            out.warnings.append(f"{path}: no such file or folder")
            out.missing.append(path)
    return out


def _walk(root: Path, recursive: bool, warnings: list[str]) -> list[Path]:
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError as e:
            warnings.append(f"{folder}: cannot read ({e.strerror})")
            continue
        if (st.st_dev, st.st_ino) in visited:
            warnings.append(f"{folder}: symbolic link loop, skipped")
            continue
        visited.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            warnings.append(f"{folder}: cannot list ({e.strerror})")
            continue
        subdirs = []
        for entry in entries:
            p = Path(entry.path)
            try:
                if entry.is_dir():
                    subdirs.append(p)
                elif entry.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(p)
                elif entry.is_symlink() and not p.exists():
                    warnings.append(f"{p}: broken symbolic link")
            except OSError as e:  # e.g. ELOOP on a self-referencing link
                warnings.append(f"{p}: {e.strerror}")
        if recursive:
            stack.extend(reversed(subdirs))
    return found


def load_rgb(path, max_pixels: int = DEFAULT_MAX_PIXELS, draft: tuple[int, int] | None = None):
    """Decode ``path`` to an 8-bit RGB PIL image.

    ``draft`` (w, h): let JPEG decoding downscale by a power of two while staying at least this big,
    which makes huge photos much cheaper when they are resized anyway.

    ``max_pixels`` is checked as soon as the header is read, before any pixel is decoded. Pillow's
    warnings are silenced here, deliberately, in the worker processes too: its DecompressionBombWarning
    fires from 89.5 MP, below our documented limit (its hard error, from 179 MP, is reported with our
    limit); "Corrupt EXIF data" only costs the orientation. A photo either decodes or gets an
    ``ImageLoadError`` saying why; nothing else is worth a line on stderr.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError("empty file (0 bytes)")
        # (process-wide filters: a thread decoding at the same moment may keep or lose the "ignore" a
        # little early or late; both are harmless)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageLoadError(f"too large: {w}×{h} pixels is over the {max_pixels:,}-pixel limit")
                if draft is not None and im.format == "JPEG":
                    im.draft("RGB", draft)
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        kind = _signature(path)  # every plugin failed; a known header means a damaged file, not "not an image"
        if kind:
            raise ImageLoadError(f"truncated or corrupt (a {kind} file Pillow cannot decode)") from None
        raise ImageLoadError("not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(_too_large(e, max_pixels, Image.MAX_IMAGE_PIXELS)) from None
    except FileNotFoundError:
        raise ImageLoadError("no such file") from None
    except PermissionError:
        raise ImageLoadError("permission denied (the file is not readable)") from None
    except IsADirectoryError:
        raise ImageLoadError("a folder, not a file") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, broken headers, unreadable file
        raise ImageLoadError(f"truncated or corrupt ({e})") from None


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _signature(path: Path) -> str | None:
    """The image format a file's first bytes announce, if any."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _too_large(e: Exception, max_pixels: int, pillow_limit: int | None) -> str:
    """Pillow refused the size before we could look (over 2 × its MAX_IMAGE_PIXELS): say it in our terms."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    pixels = int(m.group(1)) if m else None
    if pixels is None or pixels > max_pixels:
        return "too large: " + (f"{pixels:,} pixels is " if pixels else "") + f"over the {max_pixels:,}-pixel limit"
    # a max_pixels above Pillow's own hard limit: only PIL.Image.MAX_IMAGE_PIXELS can let it through
    return (f"too large for Pillow's decompression-bomb guard ({pixels:,} pixels; it refuses over "
            f"{2 * (pillow_limit or 0):,}: raise PIL.Image.MAX_IMAGE_PIXELS to allow it)")


def _to_rgb(im):
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        im = _to_8bit(im)
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def _to_8bit(im):
    """16-bit / 32-bit / float greyscale → 8-bit, scaled by the type's range (PIL's convert would clip)."""
    import numpy as np
    from PIL import Image

    a = np.asarray(im)
    if im.mode == "F":
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
    else:
        a = a.astype(np.float64) / (257.0 if a.max() <= 65535 else (2 ** 32 - 1) / 255)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
