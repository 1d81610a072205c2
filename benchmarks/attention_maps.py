"""Where a DKGZSL bundle looks: FDE region weights and ARA attention maps over photos, saved as PNG.

For each photo, one PNG strip of panels at the backbone's input crop (what the region grid covers):
the photo; FDE's region weights m (B, R) (σ of the region score: 0 suppressed … 1 kept, absolute
colour scale, so a map that keeps everything looks uniformly hot); then, for the predicted class's
``--top`` attributes (its largest class-attribute values), ARA's attention over the regions for that
attribute's query (a softmax over R regions: each map is drawn relative to its own maximum; the caption
gives the maximum share against the uniform 1/R). The numbers behind every panel go to ``maps.json``
(per photo: prediction, region weights and attention as grids, ARA scores of the attributes shown).

    .venv/bin/python benchmarks/attention_maps.py --model local-dir:runs/dk/bundle photos/*.jpg --out maps/

Needs a DKGZSL bundle on region features (``feature_kind`` "regions", FDE and/or ARA on) with an image
backbone. A CNN's region map is its H×W grid in row-major order (EfficientNet-Lite0 at 224 px: 7×7);
for ViT tokens a leading class token is dropped when the rest make a square grid. Pillow only (no
matplotlib in the environment). CPU by default (``--device``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dkgzsl_app.models.errors import BundleError, DkgzslError  # noqa: E402


def grid_side(regions: int) -> tuple[int, int]:
    """(side, skip): regions = skip + side² with skip 0 (a CNN grid) or 1 (ViT class token + patches)."""
    for skip in (0, 1):
        side = math.isqrt(regions - skip)
        if side > 0 and side * side == regions - skip:
            return side, skip
    raise BundleError(f"{regions} regions are not a square grid (nor a class token plus one): "
                      "cannot place them on the photo.")


def heat_rgb(values: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white colour map for values in [0, 1] (..., ) → (..., 3) uint8."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.concatenate([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    return (rgb * 255).astype(np.uint8)


def overlay(photo, grid: np.ndarray, alpha: float = 0.55):
    """The photo (PIL RGB, square) with ``grid`` (side, side) in [0, 1] upsampled over it (bilinear)."""
    from PIL import Image

    size = photo.size
    up = Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8), "L").resize(size, Image.BILINEAR)
    heat = Image.fromarray(heat_rgb(np.asarray(up, np.float32) / 255.0), "RGB")
    return Image.blend(photo, heat, alpha)


def backbone_view(backbone, path: str):
    """The photo as the backbone sees it: timm's eval resize and centre crop, before tensor conversion."""
    from dkgzsl_app.images import load_rgb

    im = load_rgb(path)
    for step in backbone.transform().transforms:
        if type(step).__name__ in ("ToTensor", "MaybeToTensor", "Normalize", "MaybeToNumpy"):
            break
        im = step(im)
    return im


def strip(panels: list, captions: list[str], panel: int):
    """Panels (PIL RGB) side by side at ``panel`` px, each with a caption underneath."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=12)  # Pillow's own TrueType font (needs FreeType)
    except (ImportError, OSError, TypeError):
        font = ImageFont.load_default()
    lines = max(c.count("\n") + 1 for c in captions)
    text_h = 15 * lines + 6
    out = Image.new("RGB", (panel * len(panels), panel + text_h), "white")
    draw = ImageDraw.Draw(out)
    for i, (p, c) in enumerate(zip(panels, captions)):
        out.paste(p.resize((panel, panel)), (i * panel, 0))
        draw.multiline_text((i * panel + 3, panel + 3), c, fill="black", spacing=3, font=font)
    return out


def attention_maps(clf, photos: list[str], out_dir, top: int = 3, panel: int = 224) -> list[Path]:
    """Write one PNG per photo (and ``maps.json``) under ``out_dir`` for a loaded Classifier ``clf`` of a
    DKGZSL regions bundle; returns the PNG paths (unreadable photos are skipped with a note on stderr)."""
    import torch

    model, cfg = clf.model, clf.bundle.config
    if cfg.feature_kind != "regions" or not hasattr(model, "refine"):
        raise BundleError(f"{cfg.method} bundle on {cfg.feature_kind} features: attention maps need a DKGZSL "
                          "bundle trained on region features (dkgzsl train --method dkgzsl on photos).")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from dkgzsl_app.tui.engine import MemoryFeatureCache

    cache = MemoryFeatureCache()  # the backbone runs once per photo for the maps and the prediction
    got = clf.features(photos, batch_size=8, workers=0, cache=cache)
    preds = clf.classify(photos, top_k=1, workers=0, cache=cache)
    names, attrs = list(cfg.attribute_names), model.class_attributes.detach().cpu().numpy()
    written, record = [], []
    for i, path in enumerate(photos):
        if i not in got.features:
            print(f"{path}: skipped ({got.errors.get(i, 'not read')})", file=sys.stderr)
            continue
        raw = got.features[i].unsqueeze(0).to(model.feature_min.device)  # (1, R, C)
        with torch.inference_mode():
            out = model.refine(raw)
        if out.region_weights is None and out.attention is None:
            raise BundleError("this bundle has neither FDE nor ARA (both ablated): there is no map to draw.")
        side, skip = grid_side(raw.shape[1])
        guess = preds[i].top[0]
        k = cfg.class_names.index(guess.name)
        view = backbone_view(clf.backbone, path)
        panels, captions = [view], [f"{Path(path).name}\n-> {guess.name} (p {guess.probability:.2f})"]
        entry = {"path": str(path), "class": guess.name, "probability": guess.probability, "grid": side}
        if out.region_weights is not None:
            w = out.region_weights[0, skip:].float().cpu().numpy()  # (side²,)
            panels.append(overlay(view, w.reshape(side, side)))
            captions.append(f"FDE weights\n{w.min():.2f} to {w.max():.2f}")
            entry["region_weights"] = w.reshape(side, side).round(4).tolist()
        if out.attention is not None:
            entry["attributes"] = []
            for a in np.argsort(-attrs[k], kind="stable")[:top]:
                att = out.attention[0, a, skip:].float().cpu().numpy()  # (side²,)
                score = float(out.attribute_scores[0, a])
                panels.append(overlay(view, (att / max(att.max(), 1e-12)).reshape(side, side)))
                captions.append(f"ARA: {names[a]} (class {attrs[k, a]:g})\n"
                                f"max {att.max():.3f}, uniform {1 / len(att):.3f}")
                entry["attributes"].append({"attribute": names[a], "class_value": float(attrs[k, a]),
                                            "ara_score": round(score, 4),
                                            "attention": att.reshape(side, side).round(4).tolist()})
        png = out_dir / f"{i:03d}_{Path(path).stem}.png"
        strip(panels, captions, panel).save(png)
        written.append(png)
        record.append(entry)
    (out_dir / "maps.json").write_text(json.dumps(record, indent=1))
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--model", required=True, help="a DKGZSL regions bundle: local-dir:PATH, hf-hub:ORG/NAME, …")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/attention_maps")
    ap.add_argument("--top", type=int, default=3, help="attributes of the predicted class to map")
    ap.add_argument("--panel", type=int, default=224, help="panel size in pixels")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import dkgzsl_app

    try:
        clf = dkgzsl_app.load(args.model, args.device, precision="fp32")
        files = attention_maps(clf, args.photos, args.out, args.top, args.panel)
    except DkgzslError as e:
        sys.exit(f"error: {e}")
    print(f"{len(files)} PNG files and maps.json in {args.out}")


if __name__ == "__main__":
    main()
