"""Feature loading (xlsa17 v5/v7.3, own format), validation splits and class CSVs.

All data is tiny and made in tmp_path; nothing here reads real data sets.
"""

from __future__ import annotations

import os
import warnings

import h5py
import numpy as np
import pytest
import scipy.io

from dkgzsl_app.models.errors import DataError
from dkgzsl_app.trainer.data import (
    ClassTable, FeatureSet, carve_validation, hold_out_per_class, load_feature_folder, load_features, load_xlsa17,
    read_class_csv, save_feature_folder, write_class_csv,
)

C, D_ATTR, D_FEAT, PER_CLASS = 6, 4, 5, 6
SEEN, UNSEEN, VAL = [0, 1, 2, 3], [4, 5], [3]  # 0-based; class 3 is xlsa17's validation class
NAMES = [f"{i:03d}.bird_{i}" for i in range(C)]


# ----------------------------------------------------------------------------- fixtures


def xlsa17_arrays(rng_seed: int = 0):
    """(att_splits variables, res101 variables) in MATLAB layout: 1-based, column vectors."""
    rng = np.random.default_rng(rng_seed)
    labels = np.repeat(np.arange(C), PER_CLASS)  # (N,) 0-based, N = 36
    n = labels.size
    trainval, test_seen, train, val = [], [], [], []
    for c in SEEN:
        imgs = list(np.flatnonzero(labels == c))
        trainval += imgs[:4]
        test_seen += imgs[4:]
        (val if c in VAL else train).extend(imgs)  # xlsa17: train_loc + val_loc = all seen images
    test_unseen = list(np.flatnonzero(np.isin(labels, UNSEEN)))

    def loc(idx):  # shuffled like the real files, 1-based uint16 column vector
        return rng.permutation(np.asarray(idx) + 1).astype(np.uint16)[:, None]

    att = {
        "att": rng.random((D_ATTR, C)),  # (d, C)
        "allclasses_names": np.array([np.array([s]) for s in NAMES] + [np.array(["x"])], dtype=object)[:C, None],
        "trainval_loc": loc(trainval), "test_seen_loc": loc(test_seen), "test_unseen_loc": loc(test_unseen),
        "train_loc": loc(train), "val_loc": loc(val),
    }
    res = {
        "features": rng.standard_normal((D_FEAT, n)).astype(np.float32),  # (D, N)
        "labels": (labels + 1).astype(np.float64)[:, None],  # (N, 1)
        "image_files": np.array([np.array([f"img/{i}.jpg"]) for i in range(n)] + [np.array(["x"])],
                                dtype=object)[:n, None],
    }
    return att, res


def _h5_put(f: h5py.File, group, name: str, value) -> None:
    """Store one variable the way MATLAB -v7.3 does (transposed, char/cell conventions)."""
    value = np.asarray(value)
    if value.dtype == object:  # cell array -> references into #refs#
        refs_group = f.require_group("#refs#")
        refs = np.empty(value.shape, dtype=h5py.ref_dtype)
        for idx, item in np.ndenumerate(value):
            key = f"{name}_{'_'.join(map(str, idx))}"
            _h5_put(f, refs_group, key, item)
            refs[idx] = refs_group[key].ref
        ds = group.create_dataset(name, data=refs.T)
        ds.attrs["MATLAB_class"] = np.bytes_("cell")
    elif value.dtype.kind == "U":  # char row vector
        codes = np.frombuffer(str(value.ravel()[0]).encode("utf-16-le"), dtype="<u2")[None, :]  # (1, L)
        ds = group.create_dataset(name, data=codes.T)
        ds.attrs["MATLAB_class"] = np.bytes_("char")
    else:
        mclass = {"float64": "double", "float32": "single"}.get(value.dtype.name, value.dtype.name)
        ds = group.create_dataset(name, data=value.T)
        ds.attrs["MATLAB_class"] = np.bytes_(mclass)


def write_v73(path, variables: dict, userblock: bool = True) -> None:
    """A MATLAB v7.3 file: HDF5 with (optionally) MATLAB's 512-byte text header."""
    with h5py.File(path, "w", userblock_size=512 if userblock else 0) as f:
        for name, value in variables.items():
            _h5_put(f, f, name, value)
    if userblock:
        with open(path, "r+b") as fh:
            fh.write(b"MATLAB 7.3 MAT-file, Platform: test, Created by: dkgzsl tests".ljust(128))


def write_xlsa17(folder, att: dict, res: dict, fmt: str = "v5"):
    folder.mkdir(parents=True, exist_ok=True)
    for fname, variables in (("att_splits.mat", att), ("res101.mat", res)):
        variables = {k: v for k, v in variables.items() if v is not None}
        if fmt == "v5":
            scipy.io.savemat(folder / fname, variables)
        else:
            write_v73(folder / fname, variables, userblock=(fmt == "v73"))
    return folder


@pytest.fixture
def xlsa_dir(tmp_path):
    att, res = xlsa17_arrays()
    return write_xlsa17(tmp_path / "CUB", att, res)


def assert_same(a: FeatureSet, b: FeatureSet) -> None:
    for field in ("features", "labels", "attributes", "seen", "trainval", "test_seen", "test_unseen", "val_classes"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), field
    assert a.class_names == b.class_names and a.attribute_names == b.attribute_names
    assert a.sha256() == b.sha256()


# ----------------------------------------------------------------------------- xlsa17


@pytest.mark.parametrize("fmt", ["v5", "v73", "h5-no-userblock"])
def test_xlsa17_round_trip(tmp_path, fmt):
    att, res = xlsa17_arrays()
    fs = load_xlsa17(write_xlsa17(tmp_path / fmt, att, res, fmt))
    n = C * PER_CLASS
    assert fs.features.shape == (n, D_FEAT) and fs.features.dtype == np.float32
    assert fs.features.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(fs.features, res["features"].T)
    assert fs.labels.dtype == np.int64 and fs.labels.min() == 0 and fs.labels.max() == C - 1
    np.testing.assert_array_equal(fs.labels, res["labels"].ravel() - 1)
    assert fs.class_names == NAMES
    assert fs.attributes.shape == (C, D_ATTR) and fs.attributes.dtype == np.float32
    np.testing.assert_allclose(fs.attributes, att["att"].T, rtol=1e-6)
    assert fs.attribute_names == [f"attr_{j:03d}" for j in range(D_ATTR)]
    np.testing.assert_array_equal(fs.seen, np.isin(np.arange(C), SEEN))
    np.testing.assert_array_equal(fs.trainval, np.sort(att["trainval_loc"].ravel().astype(np.int64) - 1))
    np.testing.assert_array_equal(fs.test_unseen, np.sort(att["test_unseen_loc"].ravel().astype(np.int64) - 1))
    assert len(fs.test_seen) == 2 * len(SEEN)
    np.testing.assert_array_equal(fs.val_classes, VAL)
    assert "res101.mat" in fs.source


def test_v5_and_v73_give_same_hash(tmp_path):
    att, res = xlsa17_arrays()
    a = load_xlsa17(write_xlsa17(tmp_path / "a", att, res, "v5"))
    b = load_xlsa17(write_xlsa17(tmp_path / "b", att, res, "v73"))
    assert_same(a, b)
    assert len(a.sha256()) == 64


def test_attribute_names_and_features_file(tmp_path):
    att, res = xlsa17_arrays()
    folder = write_xlsa17(tmp_path / "d", att, res)
    os.rename(folder / "res101.mat", folder / "vit.mat")
    names = [f"a{j}" for j in range(D_ATTR)]
    assert load_xlsa17(folder, features_file="vit.mat", attribute_names=names).attribute_names == names
    with pytest.raises(DataError, match="attribute names"):
        load_xlsa17(folder, features_file="vit.mat", attribute_names=names[:-1])


def test_no_val_loc_means_no_val_classes(tmp_path):
    att, res = xlsa17_arrays()
    att["train_loc"] = att["val_loc"] = None  # like APY
    assert load_xlsa17(write_xlsa17(tmp_path / "apy", att, res)).val_classes is None


def test_val_loc_that_is_no_class_split_warns(tmp_path):
    att, res = xlsa17_arrays()
    att["train_loc"] = att["val_loc"]  # train and val share every class
    folder = write_xlsa17(tmp_path / "d", att, res)
    with pytest.warns(UserWarning, match="val_loc"):  # the Python API's default
        fs = load_xlsa17(folder)
    assert fs.val_classes is None
    said = []  # the CLI passes its one warning path
    assert load_features(folder, warn=said.append).val_classes is None
    assert len(said) == 2 and all("val_loc" in m for m in said)


def test_xlsa17_logic_lives_in_one_module():
    """matio reads MATLAB files only; the xlsa17 layout is trainer/xlsa17.py; data.py re-exports its loader."""
    from dkgzsl_app.trainer import data, matio, xlsa17

    assert data.load_xlsa17 is xlsa17.load_xlsa17
    assert not [n for n in vars(matio) if "xlsa17" in n or "classes_txt" in n]
    assert not [n for n in vars(data) if n.startswith("xlsa17_")]


def _move(att, src: str, dst: str, cls: int):
    """Move the images of 0-based class ``cls`` from loc ``src`` to loc ``dst`` (MATLAB layout)."""
    labels = np.repeat(np.arange(C), PER_CLASS)
    s = att[src].ravel()
    moving = s[labels[s.astype(int) - 1] == cls]
    att[src] = s[labels[s.astype(int) - 1] != cls][:, None]
    att[dst] = np.concatenate([att[dst].ravel(), moving])[:, None]


def _bad_cases():
    def drop(d, k):
        d[k] = None

    def put(d, k, i, v):
        d[k] = d[k].copy()
        d[k][i] = v

    def overlap(a, r):
        a["test_unseen_loc"] = np.concatenate([a["test_unseen_loc"], a["trainval_loc"][:1]])

    def nan_features(a, r):
        r["features"] = r["features"].copy()
        r["features"][2, 7] = np.nan
        r["features"][0, 9] = np.inf

    def inf_att(a, r):
        a["att"] = a["att"].copy()
        a["att"][1, 2] = np.inf

    def missing_class_att(a, r):  # labels use class 6 but att/names stop at 5
        a["att"] = a["att"][:, :-1]
        a["allclasses_names"] = a["allclasses_names"][:-1]

    return {
        "missing key att": (lambda a, r: drop(a, "att"), "'att'"),
        "missing key test_unseen_loc": (lambda a, r: drop(a, "test_unseen_loc"), "test_unseen_loc"),
        "missing key features": (lambda a, r: drop(r, "features"), "'features'"),
        "missing key labels": (lambda a, r: drop(r, "labels"), "'labels'"),
        "index 0": (lambda a, r: put(a, "trainval_loc", 0, 0), "trainval_loc.*index 0"),
        "index > N": (lambda a, r: put(a, "test_seen_loc", 1, 999), "test_seen_loc.*999"),
        "duplicate index": (lambda a, r: put(a, "trainval_loc", 1, a["trainval_loc"][0, 0]), "more than once"),
        "trainval overlaps test_unseen": (overlap, "trainval_loc.*test_unseen_loc"),
        "test_unseen holds seen class": (lambda a, r: _move(a, "test_seen_loc", "test_unseen_loc", 0),
                                         "test_unseen_loc.*seen"),
        "test_seen holds unseen class": (lambda a, r: _move(a, "test_unseen_loc", "test_seen_loc", 5),
                                         "test_seen_loc.*unseen"),
        "att columns vs class names": (lambda a, r: a.update(att=a["att"][:, :-1]), "'att' has 5 columns"),
        "labels length vs features": (lambda a, r: r.update(labels=r["labels"][:-1]), "'features'.*'labels'"),
        "nan in features": (nan_features, "'features': 2 NaN/inf.*image 8, dimension 3 \\(1-based\\)"),
        "inf in att": (inf_att, "'att': 1 NaN/inf.*class 3, attribute 2"),
        "label without attributes": (missing_class_att, "'labels'.*class 6"),
        "fractional label": (lambda a, r: put(r, "labels", 3, 1.5), "'labels'.*whole number"),
    }


@pytest.mark.parametrize("fmt", ["v5", "v73"])
@pytest.mark.parametrize("case", list(_bad_cases()))
def test_xlsa17_bad_files(tmp_path, case, fmt):
    mutate, pattern = _bad_cases()[case]
    att, res = xlsa17_arrays()
    mutate(att, res)
    folder = write_xlsa17(tmp_path / "d", att, res, fmt)
    with pytest.raises(DataError, match=pattern) as info:
        load_xlsa17(folder)
    assert ".mat" in str(info.value)


@pytest.mark.parametrize("missing", ["att_splits.mat", "res101.mat"])
def test_xlsa17_missing_file(xlsa_dir, missing):
    (xlsa_dir / missing).unlink()
    with pytest.raises(DataError, match=missing):
        load_xlsa17(xlsa_dir)


@pytest.mark.parametrize("fmt", ["v5", "v73"])
@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_xlsa17_corrupt_file(tmp_path, fmt, how):
    att, res = xlsa17_arrays()
    folder = write_xlsa17(tmp_path / "d", att, res, fmt)
    path = folder / "res101.mat"
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[:300],  # cuts into the first variable, features
                      "garbage": b"not a mat file\n" * 50, "empty": b""}[how])
    with pytest.raises(DataError, match="res101.mat.*(corrupt|truncated)"):
        load_xlsa17(folder)


def test_class_txt_cross_check(xlsa_dir):
    (xlsa_dir / "trainvalclasses.txt").write_text("\n".join(NAMES[i] for i in SEEN) + "\n")
    (xlsa_dir / "testclasses.txt").write_text("\n".join(NAMES[i] for i in UNSEEN) + "\n")
    load_xlsa17(xlsa_dir)  # consistent: fine
    (xlsa_dir / "trainvalclasses.txt").write_text("\n".join(NAMES[i] for i in SEEN[:-1]) + "\n")
    with pytest.raises(DataError, match="trainvalclasses.txt.*003.bird_3"):
        load_xlsa17(xlsa_dir)
    (xlsa_dir / "trainvalclasses.txt").unlink()
    (xlsa_dir / "testclasses.txt").write_text("\n".join(NAMES[i] for i in UNSEEN) + "\nno_such_class\n")
    with pytest.raises(DataError, match="testclasses.txt.*no_such_class"):
        load_xlsa17(xlsa_dir)


# ----------------------------------------------------------------------------- own format


def test_own_format_round_trip(xlsa_dir, tmp_path):
    fs = load_xlsa17(xlsa_dir, attribute_names=["has wing", "colour, red", "size", 'say "hi"'])
    out = tmp_path / "own"
    save_feature_folder(fs, out)
    assert sorted(os.listdir(out)) == ["classes.csv", "features.safetensors"]  # no temp files left
    back = load_feature_folder(out)
    assert_same(fs, back)
    assert_same(fs, load_features(out))
    save_feature_folder(back, out)  # overwriting works
    assert_same(fs, load_feature_folder(out))


def test_load_features_detects_format(xlsa_dir, tmp_path):
    assert load_features(xlsa_dir).source.startswith("xlsa17:")
    assert load_features(xlsa_dir / "att_splits.mat").source.startswith("xlsa17:")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="att_splits.mat.*features.safetensors"):
        load_features(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        load_features(tmp_path / "nowhere")


def _own_folder(tmp_path, split=None, labels=None, drop=None, origins=("seen", "seen", "unseen")):
    from safetensors.numpy import save_file

    folder = tmp_path / "own"
    folder.mkdir(exist_ok=True)
    tensors = {"features": np.ones((6, 3), np.float32),
               "labels": np.array([0, 0, 1, 1, 2, 2] if labels is None else labels, np.int64),
               "split": np.array([0, 1, 0, 1, 1, 1] if split is None else split, np.uint8)}
    tensors.pop(drop, None)
    save_file(tensors, str(folder / "features.safetensors"))
    table = ClassTable(["a", "b", "c"], list(origins), ["x", "y"], np.zeros((3, 2), np.float32))
    write_class_csv(table, folder / "classes.csv")
    return folder


def test_own_format_valid(tmp_path):
    fs = load_feature_folder(_own_folder(tmp_path))
    assert fs.trainval.tolist() == [0, 2] and fs.test_seen.tolist() == [1, 3] and fs.test_unseen.tolist() == [4, 5]
    assert fs.seen.tolist() == [True, True, False] and fs.val_classes is None


@pytest.mark.parametrize("kwargs, pattern", [
    ({"split": [0, 1, 0, 1, 0, 1]}, "split 0.*unseen.*row 4"),
    ({"split": [0, 1, 0, 1, 1, 7]}, "'split'.*value 7"),
    ({"labels": [0, 0, 1, 1, 2, 3]}, "'labels'.*class 3"),
    ({"drop": "split"}, "'split' is missing"),
    ({"split": [1, 1, 0, 1, 1, 1]}, "classes.csv.*'a'.*no trainval"),
    ({"origins": ("seen", "user", "unseen")}, "classes.csv.*'user'"),
])
def test_own_format_bad(tmp_path, kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        load_feature_folder(_own_folder(tmp_path, **kwargs))


def test_own_format_corrupt_and_missing(tmp_path):
    folder = _own_folder(tmp_path)
    (folder / "features.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="features.safetensors.*corrupt"):
        load_feature_folder(folder)
    (folder / "classes.csv").unlink()
    with pytest.raises(DataError, match="classes.csv"):
        load_feature_folder(folder)


# ----------------------------------------------------------------------------- carve_validation


def _big_set(n_cls=20, n_seen=15, per_class=10, seed=0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_cls), per_class).astype(np.int64)
    seen = np.arange(n_cls) < n_seen
    idx = np.arange(labels.size)
    seen_img = seen[labels]
    test_seen = idx[seen_img & (idx % per_class >= per_class - 2)]
    return FeatureSet(rng.standard_normal((labels.size, 4)).astype(np.float32), labels,
                      [f"c{i}" for i in range(n_cls)], np.eye(n_cls, 3, dtype=np.float32), ["a", "b", "c"],
                      seen, np.setdiff1d(idx[seen_img], test_seen), test_seen, idx[~seen_img])


def _check_split(fs, v):
    parts = [v.train, v.val_seen, v.val_unseen]
    assert sum(p.size for p in parts) == fs.trainval.size
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.sort(fs.trainval))
    for p in parts:
        assert np.intersect1d(p, fs.test_seen).size == 0 and np.intersect1d(p, fs.test_unseen).size == 0
    assert v.seen[fs.labels[v.train]].all() and v.seen[fs.labels[v.val_seen]].all()
    assert not v.seen[fs.labels[v.val_unseen]].any()
    for c in np.flatnonzero(v.seen):  # stratified: every class trains and is validated
        assert (fs.labels[v.train] == c).any() and (fs.labels[v.val_seen] == c).any()
    assert not (v.seen & ~fs.seen).any()


def test_carve_validation_random_classes():
    fs = _big_set()
    v = carve_validation(fs, seed=3)
    _check_split(fs, v)
    assert (fs.seen & ~v.seen).sum() == 3  # round(0.2 * 15)
    assert v.val_seen.size == 12 * 2  # round(0.2 * 8) per remaining class
    w = carve_validation(fs, seed=3)
    for a, b in zip((v.seen, v.train, v.val_seen, v.val_unseen), (w.seen, w.train, w.val_seen, w.val_unseen)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(v.seen, carve_validation(fs, seed=s).seen) for s in range(4, 10))


def test_carve_validation_respects_val_classes(xlsa_dir):
    fs = load_xlsa17(xlsa_dir)
    v = carve_validation(fs, seed=0)
    _check_split(fs, v)
    assert v.seen.tolist() == [True, True, True, False, False, False]
    np.testing.assert_array_equal(v.val_unseen, fs.trainval[fs.labels[fs.trainval] == 3])


def test_carve_validation_edge_cases():
    fs = _big_set(n_cls=4, n_seen=3, per_class=3)  # 1 trainval image per seen class
    v = carve_validation(fs, val_class_fraction=0.9)
    _check_split_min = (fs.seen & ~v.seen).sum()
    assert _check_split_min == 1  # leaves at least 2 seen
    assert v.val_seen.size == 0 and v.train.size == 2  # single-image classes keep their image
    with pytest.raises(DataError, match="at least 3 seen"):
        carve_validation(_big_set(n_cls=3, n_seen=2))
    with pytest.raises(DataError, match="seen_holdout"):
        carve_validation(_big_set(), seen_holdout=1.0)


# ----------------------------------------------------------------------------- class CSV


def write(tmp_path, text, encoding="utf-8", name="classes.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_read_class_csv_bom_and_order(tmp_path):
    path = write(tmp_path, "\ufeffsize,name,origin,colour\n1.5,zebra,seen,2\n-3e-1,okapi,USER,0\n\n")
    t = read_class_csv(path, attribute_names=["colour", "size"])
    assert t.names == ["zebra", "okapi"] and t.origins == ["seen", "user"]
    assert t.attribute_names == ["colour", "size"] and t.values.dtype == np.float32
    np.testing.assert_array_equal(t.values, np.array([[2, 1.5], [0, -0.3]], np.float32))
    assert read_class_csv(path).attribute_names == ["size", "colour"]


def test_class_csv_round_trip(tmp_path):
    values = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    table = ClassTable(['a, "b"', "ü", "c"], ["seen", "unseen", "user"], ["x", "y z"], values)
    write_class_csv(table, tmp_path / "t.csv")
    back = read_class_csv(tmp_path / "t.csv")
    assert back.names == table.names and back.origins == table.origins
    np.testing.assert_array_equal(back.values, values)
    write_class_csv(ClassTable(["a"], None, ["x"], values[:1, :1]), tmp_path / "n.csv")
    assert read_class_csv(tmp_path / "n.csv", require_origin=False).origins is None


@pytest.mark.parametrize("text, kwargs, pattern", [
    ("", {}, "empty"),
    ("\ufeff", {}, "empty"),
    ("name;origin;a\nx;seen;1\n", {}, "';'"),
    ("name,origin,has_wingz\nx,seen,1\n", {"attribute_names": ["has_wings"]},
     "unknown column 'has_wingz'.*did you mean 'has_wings'"),
    ("name,origin,a\nx,seen,1\n", {"attribute_names": ["a", "b"]}, "missing column.*'b'"),
    ("name,origin,a,b\nx,seen,1,2\ny,unseen,3,abc\n", {}, "row 3, column 'b' \\(D\\).*'abc' is not a number"),
    ("name,origin,a\nx,seen,\"0,5\"\n", {}, "row 2.*decimal point"),
    ("name,origin,a\nx,seen,1\ny,seen,2\nx,unseen,3\n", {}, "row 4.*'x'.*row 2"),
    ("name,origin,a\nx,seen, \n", {}, "row 2, column 'a'.*blank"),
    ("name,origin,a\nx,seen,nan\n", {}, "row 2, column 'a'.*finite"),
    ("name,origin,a\nx,seen,inf\n", {}, "row 2, column 'a'.*finite"),
    ("name,origin,a\n\nx,seen,1e39\n", {}, "row 3, column 'a'.*too large for float32"),
    ("name,origin,a\nx,seen,1,2\n", {}, "row 2 has 4 fields.*3 columns"),
    ("name,origin,a,a\nx,seen,1,2\n", {}, "'a' appears twice"),
    ("label,origin,a\nx,seen,1\n", {}, "no 'name' column"),
    ("name,a\nx,1\n", {}, "no 'origin' column"),
    ("name,origin,a\nx,maybe,1\n", {}, "row 2, column 'origin'.*'maybe'"),
    ("name,origin\nx,seen\n", {}, "no attribute columns"),
    ("name,origin,a\n", {}, "no class rows"),
])
def test_read_class_csv_errors(tmp_path, text, kwargs, pattern):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as info:
        read_class_csv(path, **kwargs)
    assert "classes.csv" in str(info.value)


def test_read_class_csv_bad_encoding(tmp_path):
    path = write(tmp_path, "name,origin,a\ncafé,seen,1\n", encoding="latin-1")
    with pytest.raises(DataError, match="classes.csv: row 2.*not UTF-8"):
        read_class_csv(path)


def test_read_class_csv_optional_origin_and_missing_file(tmp_path):
    t = read_class_csv(write(tmp_path, "name,a\nx,1\n"), require_origin=False)
    assert t.origins is None and t.values.shape == (1, 1)
    with pytest.raises(DataError, match="nope.csv.*not found"):
        read_class_csv(tmp_path / "nope.csv")


def test_no_warnings_on_clean_data(xlsa_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_xlsa17(xlsa_dir)


def test_hold_out_per_class_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [10, 10, 3, 1])
    idx = np.arange(labels.size)
    kept, held = hold_out_per_class(idx, labels, 0.2, seed=3)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), idx)
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 2, 1, 0]  # >= 1 held, >= 1 kept per class
    again = hold_out_per_class(idx, labels, 0.2, seed=3)
    assert np.array_equal(again[1], held) and not np.array_equal(hold_out_per_class(idx, labels, 0.2, seed=4)[1], held)
    with pytest.raises(DataError, match="between 0 and 1"):
        hold_out_per_class(idx, labels, 1.0)
