"""Fixed data for the TUI tests: a results file of 6 photos and a tiny bundle over the offline backbone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
CLASSES = ["cat", "espresso", "teapot"]
ORIGINS = {"cat": "seen", "espresso": "seen", "teapot": "unseen"}

# (file, [(class, probability), ...]) — scores follow classify: probability − γ (0.1) for seen classes
ROWS = [
    ("cat__0001.jpg", [("cat", 0.91), ("teapot", 0.06), ("espresso", 0.03)]),
    ("cat__0002.jpg", [("teapot", 0.44), ("cat", 0.40), ("espresso", 0.16)]),
    ("espresso__0001.jpg", [("espresso", 0.72), ("teapot", 0.20), ("cat", 0.08)]),
    ("espresso__0002.jpg", [("teapot", 0.38), ("espresso", 0.35), ("cat", 0.27)]),
    ("teapot__0001.jpg", [("teapot", 0.83), ("espresso", 0.12), ("cat", 0.05)]),
    ("mystery.jpg", [("cat", 0.55), ("espresso", 0.30), ("teapot", 0.15)]),
]


def make_photos(folder: Path) -> list[Path]:
    """Real JPEGs under the names of ROWS (cats from chelsea.jpg, the rest from coffee.jpg)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, _ in ROWS:
        src = ASSETS / ("chelsea.jpg" if name.startswith("cat") or name.startswith("mystery") else "coffee.jpg")
        shutil.copy(src, folder / name)
        out.append(folder / name)
    return out


def write_results(path: Path, photos: Path, relative: bool = False) -> Path:
    """A JSONL results file as ``dkgzsl classify --format jsonl`` writes it."""
    lines = []
    for name, top in ROWS:
        guesses = [{"class": c, "origin": ORIGINS[c], "score": round(p - (0.1 if ORIGINS[c] == "seen" else 0), 6),
                    "probability": p} for c, p in top]
        guesses.sort(key=lambda g: -g["score"])
        best = guesses[0]
        p = name if relative else str(photos / name)
        lines.append(json.dumps({"path": p, "class": best["class"], "origin": best["origin"], "score": best["score"],
                                 "probability": best["probability"], "top_k": guesses, "error": None}))
    path.write_text("\n".join(lines) + "\n")
    return path


def make_bundle(folder: Path) -> Path:
    """A head over tf_efficientnet_lite0 features (untrained; the TUI tests check plumbing)."""
    import torch

    from dkgzsl_app.models.backbone import create_backbone
    from dkgzsl_app.models.bundle import save_bundle
    from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
    from dkgzsl_app.models.networks import ZSLModel

    backbone = create_backbone("tf_efficientnet_lite0").config
    cfg = ModelConfig(method="d3gzsl", feature_dim=1280, attribute_names=["furry", "hot", "ceramic"],
                      class_names=list(CLASSES), seen=[True, True, False],
                      generator=GeneratorConfig(noise_dim=3, hidden_dim=16, critic_hidden_dim=16),
                      head=HeadConfig(embed_dim=8), calibration=0.1, backbone=backbone)
    torch.manual_seed(0)
    model = ZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 1.0]]))
    return save_bundle(model, cfg, folder)


async def wait_until(pilot, cond, timeout=30.0):
    """Let the app run until ``cond()`` holds (checked every 50 ms), or fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached in time")


LONG_NAMES = {"cat": "yellow_checked_triangle", "espresso": "green_dotted_hexagon_xl",
              "teapot": "magenta_striped_circle"}  # demo-length class names (the demo's longest: 23 characters)


def with_long_class_names(results):
    """Rewrite a results file of ROWS with LONG_NAMES as the class names; returns its path."""
    import json

    lines = []
    for line in results.read_text().splitlines():
        rec = json.loads(line)
        rec["class"] = LONG_NAMES[rec["class"]]
        for t in rec["top_k"]:
            t["class"] = LONG_NAMES[t["class"]]
        lines.append(json.dumps(rec))
    results.write_text("\n".join(lines) + "\n")
    return results
