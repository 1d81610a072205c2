"""A procedural, photo-like image set for the embedded demo: classes are attribute combinations.

Each class is a shape × colour × pattern combination; an image shows one or a few such objects at a
random position, scale and rotation, with soft shading and a shadow, on a blurred textured background
with distractor blobs, then light blur, noise and JPEG compression. 12 attributes (4 shapes, 4 colours,
4 patterns, one-hot), 48 classes (each shape in 3 of the 4 patterns), 10 of them unseen; every attribute value of an unseen class occurs in
seen classes, so recognising it needs composition, not a new attribute. Deterministic given a seed.

Two styles over the same classes: ``plain`` (the set above, which the bundled demo model was trained on)
and ``scenes`` (``render_scene``): one smaller class object at a random place, drawn last, among 3-5
distractor objects painted in the colours and patterns of other classes but shaped as blobs, irregular
polygons, ellipses or bars (never a class shape), on a busy coloured background, so that a feature
pooled over the whole photo mixes the object with its surroundings.
"""
from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..models.errors import UsageError

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

# ---- the harder "scenes" style ------------------------------------------------------------------------

STYLES = ("plain", "scenes")
DISTRACTOR_KINDS = ("blob", "polygon", "ellipse", "bar")  # disjoint from SHAPES by construction


def distractor_outline(kind: str, cx: float, cy: float, r: float, angle: float,
                       rng: random.Random) -> list[tuple[float, float]]:
    """A distractor's outline, at most ``r`` from (cx, cy): never one of the class SHAPES.

    Every class shape is round in the sense of its second moments (a regular polygon's inertia is the
    same along every axis); every distractor is elongated (axis ratio at most about 0.65) and so unlike
    any of them. blob: a smooth bean with 2- and 3-fold lobes; polygon: 6-9 vertices at jittered angles
    and radii on an ellipse (irregular); ellipse: axis ratio 0.3-0.55; bar: side ratio 0.18-0.35."""
    if kind == "blob":
        a2, a3 = rng.uniform(0.15, 0.3), rng.uniform(0.08, 0.16)
        p2, p3, squash = rng.uniform(-0.5, 0.5), rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.6)  # lobes along x
        pts = []
        for t in np.linspace(0, 2 * math.pi, 48, endpoint=False):
            rho = 1 + a2 * math.cos(2 * t + p2) + a3 * math.cos(3 * t + p3)
            pts.append((rho * math.cos(t), squash * rho * math.sin(t)))
    elif kind == "polygon":
        n, squash = rng.randint(6, 9), rng.uniform(0.4, 0.6)
        pts = []
        for k in range(n):
            t = 2 * math.pi * (k + rng.uniform(-0.3, 0.3)) / n
            rho = rng.uniform(0.65, 1.0)
            pts.append((rho * math.cos(t), squash * rho * math.sin(t)))
    elif kind == "ellipse":
        ratio = rng.uniform(0.3, 0.55)
        pts = [(math.cos(t), ratio * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 40, endpoint=False)]
    elif kind == "bar":
        w = rng.uniform(0.18, 0.35)
        pts = [(-1.0, -w), (1.0, -w), (1.0, w), (-1.0, w)]
    else:
        raise ValueError(f"unknown distractor kind {kind!r} (known: {', '.join(DISTRACTOR_KINDS)})")
    extent = max(math.hypot(x, y) for x, y in pts)  # scale so that every point lies within r
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa) / extent, cy + r * (x * sa + y * ca) / extent) for x, y in pts]


def _random_colour(rng: random.Random, sat=(0.25, 0.9), val=(0.35, 0.95)) -> tuple[int, int, int]:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return tuple(int(v * 255) for v in rgb)


def _busy_background(size: int, rng: random.Random) -> Image.Image:
    """A gradient between two random colours, covered by 8-14 coloured patches (oblong rectangles and
    ellipses, irregular 5-8-gons, bands of stripes: no class shape either), grain, and a light blur: busy,
    but softer than the objects on it."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (xx * math.cos(rng.uniform(0, 6.3)) + yy * math.sin(rng.uniform(0, 6.3)))[..., None]
    a, b = np.array(_random_colour(rng), np.float32), np.array(_random_colour(rng), np.float32)
    bg = Image.fromarray(np.clip(a * (1 - t) + b * t, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(bg)
    for _ in range(rng.randint(8, 14)):
        colour, kind = _random_colour(rng), rng.randrange(4)
        x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.08, 0.35) * size
        if kind == 0:
            h = r * rng.uniform(0.25, 0.65)
            d.rectangle([x - r, y - h, x + r, y + h], fill=colour)
        elif kind == 1:
            h = r * rng.uniform(0.3, 0.7)
            d.ellipse([x - r, y - h, x + r, y + h], fill=colour)
        elif kind == 2:
            n = rng.randint(5, 8)
            d.polygon([(x + r * rng.uniform(0.5, 1.3) * math.cos(2 * math.pi * k / n + rng.uniform(0, 0.8)),
                        y + r * rng.uniform(0.5, 1.3) * math.sin(2 * math.pi * k / n + rng.uniform(0, 0.8)))
                       for k in range(n)], fill=colour)
        else:  # a band of parallel stripes across the photo
            angle, step = rng.uniform(0, math.pi), rng.uniform(0.04, 0.1) * size
            ca, sa, half = math.cos(angle), math.sin(angle), 1.5 * size
            for k in range(rng.randint(2, 5)):
                o = (k - 2) * step * 2 + rng.uniform(-size / 3, size / 3)
                px, py = x + o * -sa, y + o * ca
                d.polygon([(px - half * ca, py - half * sa), (px + half * ca, py + half * sa),
                           (px + half * ca - step * sa, py + half * sa + step * ca),
                           (px - half * ca - step * sa, py - half * sa + step * ca)], fill=colour)
    grain = np.random.default_rng(rng.getrandbits(32)).normal(0, 12, (size, size, 3))
    bg = Image.fromarray(np.clip(np.asarray(bg, np.float32) + grain, 0, 255).astype(np.uint8))
    return bg.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 3.0)))


def _paint(img: Image.Image, pts: list[tuple[float, float]], r: float, colour, pattern: str,
           rng: random.Random) -> None:
    """Draw one object onto ``img`` in place: a soft shadow, then its outline filled with ``pattern`` in
    ``colour`` under a linear light gradient. Works in a square window around the object (fast)."""
    cx, cy = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    half = int(math.ceil(max(math.hypot(x - cx, y - cy) for x, y in pts) * 1.3)) + 4
    x0, y0, side = int(cx) - half, int(cy) - half, 2 * half
    local = [(x - x0, y - y0) for x, y in pts]
    shadow = Image.new("L", (side, side), 0)
    ImageDraw.Draw(shadow).polygon([(x + r * 0.12, y + r * 0.15) for x, y in local], fill=110)
    img.paste((20, 20, 20), (x0, y0, x0 + side, y0 + side), mask=shadow.filter(ImageFilter.GaussianBlur(r * 0.12)))
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).polygon(local, fill=255)
    surface = _texture(pattern, side, colour, rng, r)
    light = np.linspace(rng.uniform(0.75, 0.95), rng.uniform(1.05, 1.2), side, dtype=np.float32)
    shade = light[None, :, None] if rng.random() < 0.5 else light[:, None, None]
    surface = Image.fromarray(np.clip(np.asarray(surface, np.float32) * shade, 0, 255).astype(np.uint8))
    img.paste(surface, (x0, y0), mask=mask.filter(ImageFilter.GaussianBlur(0.8)))


def _jitter(colour, rng: random.Random) -> tuple[int, int, int]:
    return tuple(int(np.clip(v * rng.uniform(0.85, 1.15), 0, 255)) for v in colour)


def render_scene(cls: DemoClass, seed: int, size: int = 256, with_box: bool = False):
    """One RGB "scenes" photo of ``cls`` (same (class, seed) → same picture): the class object (its outline
    radius 9-15% of the side) at a random place and drawn last (never occluded), among 3-5 distractors (a
    ``DISTRACTOR_KINDS`` outline in another class's colour and pattern: never the object's own pair) on
    a busy background; then light blur and noise as in ``render``. ``with_box``: return (photo, the
    object's bounding box (x0, y0, x1, y1) in pixels) instead, e.g. to score where a model looks."""
    rng = random.Random(f"scenes/{cls.name}/{seed}")
    img = _busy_background(size, rng)
    pairs = [(c, p) for c in COLOURS for p in PATTERNS if (c, p) != (cls.colour, cls.pattern)]
    for _ in range(rng.randint(3, 5)):
        colour, pattern = rng.choice(pairs)
        kind, r = rng.choice(DISTRACTOR_KINDS), size * rng.uniform(0.08, 0.15)
        cx, cy = rng.uniform(r * 0.5, size - r * 0.5), rng.uniform(r * 0.5, size - r * 0.5)
        pts = distractor_outline(kind, cx, cy, r, rng.uniform(0, 2 * math.pi), rng)
        _paint(img, pts, r, _jitter(COLOURS[colour], rng), pattern, rng)
    r = size * rng.uniform(0.09, 0.15)
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    pts = _outline(cls.shape, cx, cy, r, rng.uniform(0, 2 * math.pi))
    _paint(img, pts, r, _jitter(COLOURS[cls.colour], rng), cls.pattern, rng)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2, 6), (size, size, 3))
    img = Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))
    if not with_box:
        return img
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    return img, (min(xs), min(ys), max(xs), max(ys))


def renderer(style: str):
    """The render function of a style: plain → ``render``, scenes → ``render_scene``."""
    if style == "plain":
        return render
    if style == "scenes":
        return render_scene
    raise UsageError(f"unknown demo style {style!r}: use one of {', '.join(STYLES)}.")


def write_class_table(path: Path) -> None:
    """The demo's attributes CSV (the class CSV format: name, origin, attributes)."""
    from ..models.classcsv import ClassTable, write_class_csv

    classes = demo_classes()
    write_class_csv(ClassTable([c.name for c in classes], ["seen" if c.seen else "unseen" for c in classes],
                               list(ATTRIBUTES), np.array([c.attributes() for c in classes], np.float32)), path)


def write_training_folder(out: Path, per_class: int, seed: int = 0, quality: int = 90,
                          style: str = "plain") -> None:
    """``out/<class>/NNNN.jpg`` for each seen class, plus ``out/classes.csv`` for all classes.
    ``style``: plain (the demo set) or scenes (``render_scene``)."""
    draw = renderer(style)
    out = Path(out)
    for c in demo_classes():
        if not c.seen:
            continue
        (out / c.name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(c, seed * 1_000_003 + i).save(out / c.name / f"{i:04d}.jpg", quality=quality)
    write_class_table(out / "classes.csv")


def write_test_photos(out: Path, per_class: int, seed: int = 1, quality: int = 90, style: str = "plain") -> list[Path]:
    """Photos of every class (seen and unseen), the true class in the name: ``<class>__NNNN.jpg``.
    ``style``: plain (the demo set) or scenes (``render_scene``)."""
    draw = renderer(style)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in demo_classes():
        for i in range(per_class):
            p = out / f"{c.name}__{i:04d}.jpg"
            draw(c, seed * 1_000_003 + i).save(p, quality=quality)
            paths.append(p)
    return paths
