"""Tiny fake downloads of CUB-200-2011, AWA2 and SUN in their official layouts (tests of dkgzsl_app.datasets).

Every class gets ``per_class`` photos: small generated JPEGs, a different flat colour per class (so a random
backbone still tells some classes apart), or empty files with ``jpeg=False`` (the adapters only list photos).
Attribute vectors are random but fixed by the seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dkgzsl_app.datasets import SPLITS


def classes(name: str) -> list[str]:
    return (SPLITS / name / "allclasses.txt").read_text().split()


def n_attributes(name: str) -> int:
    return len((SPLITS / name / "attributes.txt").read_text().splitlines())


def _photo(path: Path, k: int, jpeg: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not jpeg:
        path.touch()
        return
    from PIL import Image

    rng = np.random.default_rng(k)
    base = np.array([(k * 37) % 256, (k * 91) % 256, (k * 53) % 256], np.uint8)
    px = np.clip(base + rng.integers(-20, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(px).save(path, quality=90)


def make_cub(root: Path, per_class: int = 2, jpeg: bool = True, seed: int = 0, only: dict | None = None) -> Path:
    """CUB_200_2011/ under ``root``: images/, images.txt, image_class_labels.txt, classes.txt, attributes/.
    ``only``: {class: photos} to list photos of those classes only (a partial download; the class and
    attribute files stay complete)."""
    top = root / "CUB_200_2011"
    names = sorted(classes("CUB"), key=lambda n: int(n.split(".")[0]))  # CUB's own order: 001. ... 200.
    images, labels = [], []
    for c, name in enumerate(names):
        for j in range(per_class if only is None else only.get(name, 0)):
            rel = f"{name}/{name.split('.')[1]}_{j:04d}.jpg"
            _photo(top / "images" / rel, c, jpeg)
            images.append(rel)
            labels.append(c + 1)
    (top / "images.txt").write_text("".join(f"{i + 1} {r}\n" for i, r in enumerate(images)))
    (top / "image_class_labels.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(labels)))
    (top / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (top / "attributes").mkdir()
    vals = np.random.default_rng(seed).uniform(0, 100, (len(names), n_attributes("CUB")))
    np.savetxt(top / "attributes" / "class_attribute_labels_continuous.txt", vals, fmt="%.4f")
    return top


def make_awa2(root: Path, per_class: int = 2, jpeg: bool = True, seed: int = 0) -> Path:
    """Animals_with_Attributes2/ under ``root``: JPEGImages/<class>/, classes.txt, predicates.txt, the matrix."""
    top = root / "Animals_with_Attributes2"
    names = classes("AWA2")
    for c, name in enumerate(names):
        for j in range(per_class):
            _photo(top / "JPEGImages" / name / f"{name}_{10001 + j}.jpg", c, jpeg)
    (top / "classes.txt").write_text("".join(f"{i + 1:6d}\t{n}\n" for i, n in enumerate(names)))
    attrs = (SPLITS / "AWA2" / "attributes.txt").read_text().split()
    (top / "predicates.txt").write_text("".join(f"{i + 1:6d}\t{a}\n" for i, a in enumerate(attrs)))
    vals = np.random.default_rng(seed).uniform(0, 100, (len(names), len(attrs)))
    np.savetxt(top / "predicate-matrix-continuous.txt", vals, fmt="%6.2f")
    return top


def make_sun(root: Path, per_class: int = 2, jpeg: bool = True, seed: int = 0) -> Path:
    """``root`` with images/<letter>/<class>/ and SUNAttributeDB/{images.mat, attributeLabels_continuous.mat}."""
    from scipy.io import savemat

    rels = []
    for c, name in enumerate(classes("SUN")):
        for j in range(per_class):
            rel = f"{name[0]}/{name}/sun_{c:04d}{j:03d}.jpg"
            _photo(root / "images" / rel, c, jpeg)
            rels.append(rel)
    db = root / "SUNAttributeDB"
    db.mkdir(parents=True)
    cell = np.empty((len(rels), 1), dtype=object)
    for i, r in enumerate(rels):
        cell[i, 0] = r
    savemat(db / "images.mat", {"images": cell})
    votes = np.random.default_rng(seed).uniform(0, 1, (len(rels), n_attributes("SUN")))
    savemat(db / "attributeLabels_continuous.mat", {"labels_cv": votes})
    return root
