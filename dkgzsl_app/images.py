"""Finding and decoding photos robustly: one bad file is a warning, never the end of a run.

``collect_images`` turns files, folders and globs into image paths (skipping what is not an image,
surviving symlink loops); ``load_rgb`` decodes one file into an 8-bit RGB PIL image whatever its mode
(CMYK, 16-bit, palette, alpha, EXIF-rotated), or raises ``ImageLoadError`` with a readable reason.
"""
from __future__ import annotations

import glob
import os
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
        else:
            out.warnings.append(f"{path}: no such file or folder")
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
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError("empty file (0 bytes)")
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
        raise ImageLoadError("not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, broken headers, unreadable file
        raise ImageLoadError(f"truncated or corrupt ({e})") from None


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
