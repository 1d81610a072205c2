"""A procedural, photo-like image set for the embedded demo: classes are attribute combinations.

Each class is a shape × colour × pattern combination; an image shows one or a few such objects at a
random position, scale and rotation, with soft shading and a shadow, on a blurred textured background
with distractor blobs, then light blur, noise and JPEG compression. 12 attributes (4 shapes, 4 colours,
4 patterns, one-hot), 48 classes (each shape in 3 of the 4 patterns), 10 of them unseen; every attribute value of an unseen class occurs in
seen classes, so recognising it needs composition, not a new attribute. Deterministic given a seed.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {"red": (205, 40, 35), "green": (40, 160, 60), "blue": (35, 80, 200), "yellow": (235, 200, 30)}
PATTERNS = ("solid", "striped", "dotted", "checked")
ATTRIBUTES = [f"shape:{s}" for s in SHAPES] + [f"colour:{c}" for c in COLOURS] + [f"pattern:{p}" for p in PATTERNS]
# Held out: spread over shapes, colours and patterns so that every value stays seen elsewhere.
UNSEEN = {("circle", "red", "striped"), ("circle", "blue", "checked"), ("square", "green", "dotted"),
          ("square", "yellow", "solid"), ("triangle", "red", "checked"), ("triangle", "blue", "dotted"),
          ("star", "green", "solid"), ("star", "yellow", "striped"), ("circle", "yellow", "dotted"),
          ("square", "red", "striped")}
EXCLUDED_PATTERN = {"circle": "solid", "square": "checked", "triangle": "striped", "star": "dotted"}


@dataclass(frozen=True)
class DemoClass:
    shape: str
    colour: str
    pattern: str

    @property
    def name(self) -> str:
        return f"{self.colour}_{self.pattern}_{self.shape}"

    @property
    def seen(self) -> bool:
        return (self.shape, self.colour, self.pattern) not in UNSEEN

    def attributes(self) -> list[float]:
        on = {f"shape:{self.shape}", f"colour:{self.colour}", f"pattern:{self.pattern}"}
        return [1.0 if a in on else 0.0 for a in ATTRIBUTES]


def demo_classes() -> list[DemoClass]:
    """48 classes: every shape × colour × pattern except one pattern per shape (EXCLUDED_PATTERN)."""
    return [DemoClass(s, c, p) for s in SHAPES for c in COLOURS for p in PATTERNS if p != EXCLUDED_PATTERN[s]]


def _outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "circle":
        pts = [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
    elif shape == "square":
        pts = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    elif shape == "triangle":
        pts = [(math.cos(t), math.sin(t)) for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    else:  # five-pointed star
        pts = [((1.0 if k % 2 == 0 else 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5)) for k in range(10)]
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


def _texture(pattern: str, size: int, colour, rng: random.Random, radius: float) -> Image.Image:
    """The object's surface: the class colour with the class pattern in a lighter/darker tone, at a
    scale relative to the object so small objects still show it."""
    tex = Image.new("RGB", (size, size), colour)
    if pattern == "solid":
        return tex
    d = ImageDraw.Draw(tex)
    other = tuple(min(255, int(v * 0.35 + 255 * 0.65)) for v in colour) if sum(colour) < 450 else \
        tuple(int(v * 0.35) for v in colour)
    step = max(5, int(radius * rng.uniform(0.4, 0.6)))
    if pattern == "striped":
        for x in range(-size, 2 * size, step):
            d.polygon([(x, 0), (x + step // 2, 0), (x + step // 2 + size, size), (x + size, size)], fill=other)
    elif pattern == "dotted":
        for y in range(step // 2, size, step):
            for x in range(step // 2 + (step // 2 if (y // step) % 2 else 0), size, step):
                d.ellipse([x - step // 4, y - step // 4, x + step // 4, y + step // 4], fill=other)
    else:  # checked
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=other)
    return tex.rotate(rng.uniform(0, 180), resample=Image.BILINEAR, expand=False, fillcolor=colour)


def _background(size: int, rng: random.Random) -> Image.Image:
    nprng = np.random.default_rng(rng.getrandbits(32))
    base = np.array([rng.randint(60, 220) for _ in range(3)], dtype=np.float32)
    tint = np.array([rng.randint(60, 220) for _ in range(3)], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (xx * math.cos(rng.uniform(0, 6.3)) + yy * math.sin(rng.uniform(0, 6.3)))[..., None]
    img = base * (1 - t) + tint * t + nprng.normal(0, 18, (size, size, 3))  # gradient + grain
    bg = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
    d = ImageDraw.Draw(bg)
    for _ in range(rng.randint(3, 8)):  # out-of-focus clutter in muted tones
        r = rng.uniform(0.05, 0.2) * size
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        grey = rng.randint(70, 200)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(grey + rng.randint(-20, 20), grey, grey + rng.randint(-20, 20)))
    return bg.filter(ImageFilter.GaussianBlur(rng.uniform(3, 7)))


def render(cls: DemoClass, seed: int, size: int = 256) -> Image.Image:
    """One RGB photo of ``cls``; the same (class, seed) always gives the same picture."""
    rng = random.Random(f"{cls.name}/{seed}")
    img = _background(size, rng)
    colour = tuple(int(np.clip(v * rng.uniform(0.85, 1.15), 0, 255)) for v in COLOURS[cls.colour])
    count = 1 if rng.random() < 0.7 else rng.randint(2, 3)
    for _ in range(count):
        r = size * rng.uniform(0.18, 0.3) / (1 if count == 1 else 1.35)
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        pts = _outline(cls.shape, cx, cy, r, rng.uniform(0, 2 * math.pi))
        shadow = Image.new("L", (size, size), 0)
        ImageDraw.Draw(shadow).polygon([(x + r * 0.12, y + r * 0.15) for x, y in pts], fill=110)
        img.paste((20, 20, 20), mask=shadow.filter(ImageFilter.GaussianBlur(r * 0.12)))
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).polygon(pts, fill=255)
        surface = _texture(cls.pattern, size, colour, rng, r)
        light = np.linspace(rng.uniform(0.75, 0.95), rng.uniform(1.05, 1.2), size, dtype=np.float32)
        shade = light[None, :, None] if rng.random() < 0.5 else light[:, None, None]
        surface = Image.fromarray(np.clip(np.asarray(surface, np.float32) * shade, 0, 255).astype(np.uint8))
        img.paste(surface, mask=mask.filter(ImageFilter.GaussianBlur(0.8)))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2, 7), (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def write_class_table(path: Path) -> None:
    """The demo's attributes CSV (the class CSV format: name, origin, attributes)."""
    from ..models.classcsv import ClassTable, write_class_csv

    classes = demo_classes()
    write_class_csv(ClassTable([c.name for c in classes], ["seen" if c.seen else "unseen" for c in classes],
                               list(ATTRIBUTES), np.array([c.attributes() for c in classes], np.float32)), path)


def write_training_folder(out: Path, per_class: int, seed: int = 0, quality: int = 90) -> None:
    """``out/<class>/NNNN.jpg`` for each seen class, plus ``out/classes.csv`` for all classes."""
    out = Path(out)
    for c in demo_classes():
        if not c.seen:
            continue
        (out / c.name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            render(c, seed * 1_000_003 + i).save(out / c.name / f"{i:04d}.jpg", quality=quality)
    write_class_table(out / "classes.csv")


def write_test_photos(out: Path, per_class: int, seed: int = 1, quality: int = 90) -> list[Path]:
    """Photos of every class (seen and unseen), the true class in the name: ``<class>__NNNN.jpg``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in demo_classes():
        for i in range(per_class):
            p = out / f"{c.name}__{i:04d}.jpg"
            render(c, seed * 1_000_003 + i).save(p, quality=quality)
            paths.append(p)
    return paths
