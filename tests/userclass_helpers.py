"""A tiny backbone-free bundle for the class-registry tests (builds in milliseconds), and a CSV writer."""
from __future__ import annotations

from pathlib import Path

ATTRS = ["furry", "hot", "ceramic", "size"]
CLASSES = ["cat", "espresso", "teapot", "dog", "kettle"]
SEEN = [True, True, False, True, False]
VALUES = [[1, 0, 0, 0.5], [0, 1, 0, 0.1], [0, 1, 1, 0.4], [1, 0, 0, 0.8], [0, 1, 0.5, 0.6]]


def tiny_bundle(folder: Path, seed: int = 0) -> Path:
    import torch

    from dkgzsl_app.models.bundle import save_bundle
    from dkgzsl_app.models.config import GeneratorConfig, HeadConfig, ModelConfig
    from dkgzsl_app.models.networks import ZSLModel

    cfg = ModelConfig(method="d3gzsl", feature_dim=24, attribute_names=list(ATTRS), class_names=list(CLASSES),
                      seen=list(SEEN), generator=GeneratorConfig(noise_dim=4, hidden_dim=32, critic_hidden_dim=8),
                      head=HeadConfig(embed_dim=16), calibration=0.1)
    torch.manual_seed(seed)
    model = ZSLModel.from_config(cfg)
    model.class_attributes.copy_(torch.tensor(VALUES, dtype=torch.float32))
    return save_bundle(model, cfg, folder)


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path
