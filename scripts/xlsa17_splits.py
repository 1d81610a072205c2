"""Rebuild dkgzsl_app/datasets/xlsa17/<NAME>/ (the class lists and test_seen_loc shipped with the package).

    python scripts/xlsa17_splits.py XLSA17_DIR ATTRIBUTES_DIR

XLSA17_DIR holds xlsa17's CUB/, AWA2/, SUN/ (att_splits.mat, trainvalclasses.txt, testclasses.txt);
ATTRIBUTES_DIR holds CUB/{images.txt, attributes.txt}, AWA2/predicates.txt and SUN/attributes.mat (the
official files; images.txt gives CUB's image order, in which every *_loc index is checked to fall on a class
of the right side). Writes allclasses.txt (att_splits.mat's order), trainvalclasses.txt, testclasses.txt
(in that order), test_seen_loc.txt (1-based, sorted), attributes.txt (the names of att's rows) and, where
the image order is known (CUB; SUN: 20 photos per class in class order), valclasses.txt: the seen classes of
val_loc that train_loc does not use.
"""
import sys
from pathlib import Path

import numpy as np

from dkgzsl_app.trainer.matio import read_mat, to_strings

OUT = Path(__file__).resolve().parents[1] / "dkgzsl_app" / "datasets" / "xlsa17"


def main(xlsa17: Path, attributes: Path) -> None:
    for d in ["CUB", "AWA2", "SUN"]:
        m = read_mat(xlsa17 / d / "att_splits.mat", [], required=[
            "allclasses_names", "trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc", "att"])
        names = to_strings(m["allclasses_names"], d)
        loc = {k: np.sort(m[k].ravel().astype(np.int64)) for k in m if k.endswith("_loc")}
        tv = (xlsa17 / d / "trainvalclasses.txt").read_text().split()
        te = (xlsa17 / d / "testclasses.txt").read_text().split()
        assert sorted(tv + te) == sorted(names), d
        o = OUT / d
        o.mkdir(parents=True, exist_ok=True)
        write = lambda f, items: (o / f).write_text("\n".join(map(str, items)) + "\n")  # noqa: E731
        write("allclasses.txt", names)
        write("trainvalclasses.txt", [n for n in names if n in tv])
        write("testclasses.txt", [n for n in names if n in te])
        write("test_seen_loc.txt", loc["test_seen_loc"])
        n_img = int(max(v.max() for v in loc.values()))
        cls = None
        if d == "CUB":
            cls = [ln.split()[1].split("/")[0] for ln in (attributes / d / "images.txt").read_text().splitlines()]
            attr = [ln.split(maxsplit=1)[1] for ln in (attributes / d / "attributes.txt").read_text().splitlines()]
        elif d == "SUN":
            cls = [names[i] for i in np.repeat(np.arange(len(names)), 20)]
            attr = to_strings(read_mat(attributes / d / "attributes.mat", [], required=["attributes"])["attributes"], d)
        else:
            attr = [ln.split()[1] for ln in (attributes / d / "predicates.txt").read_text().splitlines()]
        assert len(attr) == m["att"].shape[0], d
        write("attributes.txt", attr)
        if cls is not None:
            assert len(cls) == n_img, d
            for k, want in (("trainval_loc", tv), ("test_seen_loc", tv), ("test_unseen_loc", te)):
                assert all(cls[i - 1] in want for i in loc[k]), (d, k)
            train = {cls[i - 1] for i in loc["train_loc"]}
            write("valclasses.txt", [n for n in names if n in {cls[i - 1] for i in loc["val_loc"]} - train])
        print(f"{d}: {len(names)} classes ({len(tv)} seen), {n_img} photos, {len(loc['test_seen_loc'])} test_seen")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
