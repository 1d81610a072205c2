"""Readers of the official downloads of CUB-200-2011, AWA2 and the SUN attribute data set.

Each reader returns a :class:`Layout`: every photo the download lists, in **xlsa17's image order** (the
order of ``res101.mat``, which the proposed split's ``*_loc`` indices count in), each photo's class (under
xlsa17's class name) and each class's raw attribute vector from the official files. The orders, checked
against xlsa17's ``att_splits.mat`` (every ``trainval_loc``/``test_seen_loc`` index falls on a seen class's
photo, every ``test_unseen_loc`` index on an unseen one):

* CUB: ``images.txt`` order (checked on the real ``images.txt``: all 11,788 indices land in the right class).
* AWA2: class folders of ``JPEGImages/`` sorted by name, each folder's files sorted by name (the unseen
  classes' runs of ``test_unseen_loc`` start where the sorted folders put them, e.g. bat at 1,047 after
  antelope's 1,046 photos).
* SUN: xlsa17's class order (alphabetical), 20 photos each, in ``images.mat`` order within a class.

Within a class the order is what those listings give; xlsa17 does not ship its file names, so that part is
an assumption (README "Data sets").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Layout:
    """A download as listed by its own files.

    Attributes:
        paths: (N,) every listed photo, in xlsa17's image order (present on disk or not).
        classes: (N,) each photo's class, by xlsa17's class name.
        class_values: class name → raw attribute vector (d,) from the official attribute file.
        expected: how many photos the complete download has.
        missing: indices into ``paths`` of listed photos that are not on disk.
        where: what the photos' folder is, for messages.
    """

    paths: list[Path]
    classes: list[str]
    class_values: dict[str, np.ndarray]
    expected: int
    missing: list[int] = field(default_factory=list)
    where: str = ""


def _need(root: Path, rel: str, what: str, dataset: str, hint: str) -> Path:
    p = root / rel
    if not p.exists():
        raise DataError(f"{dataset}: {p} not found ({what}). {hint}")
    return p


def _lines(path: Path) -> list[list[str]]:
    try:
        return [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e}).") from None


def _matrix(path: Path, rows: int, what: str) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a matrix of numbers ({e}); download {what} again.") from None
    if m.shape[0] != rows:
        raise DataError(f"{path}: {m.shape[0]} rows, expected {rows} ({what}: one row per class). "
                        "The file is truncated or not the official one; download it again.")
    return m


CUB_HINT = ("Give --root the CUB_200_2011 folder of the official archive CUB_200_2011.tgz "
            "(https://www.vision.caltech.edu/datasets/cub_200_2011/): images/, images.txt, image_class_labels.txt, "
            "classes.txt and attributes/class_attribute_labels_continuous.txt.")


def read_cub(root: Path, class_names: list[str]) -> Layout:
    """CUB-200-2011: ``images.txt`` (id, path under images/), ``image_class_labels.txt`` (id, class id),
    ``classes.txt`` (id, name) and ``attributes/class_attribute_labels_continuous.txt`` (200 × 312, in
    ``classes.txt`` order)."""
    need = lambda rel, what: _need(root, rel, what, "CUB", CUB_HINT)  # noqa: E731
    images = _lines(need("images.txt", "the list of photos"))
    labels = dict(_lines(need("image_class_labels.txt", "each photo's class")))
    classes = dict(_lines(need("classes.txt", "the class names")))
    att_file = need("attributes/class_attribute_labels_continuous.txt", "the class attribute vectors")
    img_dir = need("images", "the photo folders", )
    values = _matrix(att_file, len(classes), "CUB's class attributes")
    order = sorted(classes, key=int)
    class_values = {classes[k]: values[i] for i, k in enumerate(order)}
    unknown = sorted(set(classes.values()) - set(class_names))
    if unknown:
        raise DataError(f"{root / 'classes.txt'}: classes unknown to xlsa17's CUB split ({', '.join(unknown[:3])}); "
                        "this is not CUB-200-2011's classes.txt.")
    paths, cls = [], []
    for row in images:
        if len(row) != 2 or row[0] not in labels or labels[row[0]] not in classes:
            raise DataError(f"{root / 'images.txt'}: line {' '.join(row)!r} names no photo with a class in "
                            "image_class_labels.txt; download the archive again.")
        paths.append(img_dir / row[1])
        cls.append(classes[labels[row[0]]])
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    return Layout(paths, cls, class_values, 11788, missing, where=f"{img_dir} (as listed in images.txt)")


AWA2_HINT = ("Give --root the Animals_with_Attributes2 folder of the official archive AwA2-data.zip "
             "(https://cvml.ista.ac.at/AwA2/): JPEGImages/<class>/, classes.txt, predicates.txt and "
             "predicate-matrix-continuous.txt.")


def read_awa2(root: Path, class_names: list[str]) -> Layout:
    """AWA2: ``JPEGImages/<class>/*.jpg``, ``classes.txt`` (id, name), ``predicates.txt`` (id, name) and
    ``predicate-matrix-continuous.txt`` (50 × 85, in ``classes.txt`` order)."""
    need = lambda rel, what: _need(root, rel, what, "AWA2", AWA2_HINT)  # noqa: E731
    classes = [row[1] for row in _lines(need("classes.txt", "the class names")) if len(row) >= 2]
    predicates = _lines(need("predicates.txt", "the attribute names"))
    values = _matrix(need("predicate-matrix-continuous.txt", "the class attribute vectors"), len(classes),
                     "AWA2's predicate matrix")
    if values.shape[1] != len(predicates):
        raise DataError(f"{root / 'predicate-matrix-continuous.txt'}: {values.shape[1]} columns, but predicates.txt "
                        f"names {len(predicates)} attributes; download the archive again.")
    img_dir = need("JPEGImages", "the photo folders, one per class")
    if sorted(classes) != sorted(class_names):
        raise DataError(f"{root / 'classes.txt'}: not AWA2's 50 classes "
                        f"(e.g. {', '.join(sorted(set(classes) ^ set(class_names))[:3])}).")
    folders = {p.name for p in img_dir.iterdir() if p.is_dir()}
    extra = sorted(folders - set(classes))
    if extra:
        raise DataError(f"{img_dir}: folders that are no AWA2 class: {', '.join(extra[:5])}.")
    paths, cls, missing = [], [], []
    for name in sorted(classes):  # xlsa17's order: folders by name, then files by name
        files = sorted(p for p in (img_dir / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
            if name in folders else []
        if not files:
            missing.append(len(paths))
            paths.append(img_dir / name)  # a placeholder naming the empty or absent folder
            cls.append(name)
            continue
        paths += files
        cls += [name] * len(files)
    return Layout(paths, cls, dict(zip(classes, values)), 37322, missing, where=f"{img_dir}/<class>/")


SUN_HINT = ("Give --root the folder holding images/ (SUNAttributeDB_Images.tar.gz) and the SUNAttributeDB "
            "folder (SUNAttributeDB.tar.gz, with images.mat and attributeLabels_continuous.mat), from "
            "https://cs.brown.edu/~gmpatter/sunattributes.html.")


def _sun_mat(root: Path, name: str) -> Path:
    for p in (root / name, root / "SUNAttributeDB" / name):
        if p.is_file():
            return p
    raise DataError(f"SUN: {name} not found in {root} or {root / 'SUNAttributeDB'}. {SUN_HINT}")


def sun_class(rel: str) -> str:
    """xlsa17's class name of a SUN photo path: ``b/bakery/shop/sun_x.jpg`` → ``bakery_shop``."""
    return "_".join(rel.replace("\\", "/").split("/")[1:-1])


def read_sun(root: Path, class_names: list[str]) -> Layout:
    """SUN attributes: ``images/<letter>/<class>[/<sub>]/*.jpg``, ``images.mat`` (the 14,340 photos) and
    ``attributeLabels_continuous.mat`` (14,340 × 102 per-photo votes; a class's vector is their mean)."""
    from ..trainer.matio import read_mat, to_strings

    images_mat, labels_mat = _sun_mat(root, "images.mat"), _sun_mat(root, "attributeLabels_continuous.mat")
    img_dir = _need(root, "images", "the photo folders", "SUN", SUN_HINT)
    rel = to_strings(read_mat(images_mat, [], required=["images"])["images"], f"{images_mat}: images")
    votes = np.asarray(read_mat(labels_mat, [], required=["labels_cv"])["labels_cv"], np.float64)
    if votes.shape[0] != len(rel):
        votes = votes.T
    if votes.shape[0] != len(rel):
        raise DataError(f"{labels_mat}: labels_cv has {votes.shape} votes for the {len(rel)} photos of images.mat; "
                        "download SUNAttributeDB.tar.gz again.")
    cls = [sun_class(r) for r in rel]
    unknown = sorted(set(cls) - set(class_names))
    if unknown:
        raise DataError(f"{images_mat}: photos of classes unknown to xlsa17's SUN split ({', '.join(unknown[:3])}).")
    index = {n: i for i, n in enumerate(class_names)}
    order = sorted(range(len(rel)), key=lambda i: index[cls[i]])  # stable: images.mat order within a class
    cls_arr = np.array([index[c] for c in cls])
    class_values = {n: votes[cls_arr == index[n]].mean(0) for n in sorted(set(cls))}
    paths = [img_dir / rel[i] for i in order]
    missing = [j for j, p in enumerate(paths) if not p.is_file()]
    return Layout(paths, [cls[i] for i in order], class_values, 14340, missing,
                  where=f"{img_dir} (as listed in images.mat)")


READERS = {"CUB": read_cub, "AWA2": read_awa2, "SUN": read_sun}
