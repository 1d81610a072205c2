"""The rendered demo set: its class/attribute contract, determinism, and the folders it writes."""
import numpy as np

from dkgzsl_app.models.classcsv import read_class_csv
from dkgzsl_app.trainer.render import ATTRIBUTES, demo_classes, render, write_test_photos, write_training_folder


def test_classes_attributes_and_split():
    classes = demo_classes()
    assert len(classes) >= 24 and len(ATTRIBUTES) >= 12
    unseen = [c for c in classes if not c.seen]
    seen = [c for c in classes if c.seen]
    assert len(unseen) >= 6
    vectors = {tuple(c.attributes()) for c in classes}
    assert len(vectors) == len(classes)  # every class has its own attribute vector
    seen_on = np.array([c.attributes() for c in seen]).max(axis=0)
    for c in unseen:  # composition, not a new attribute: each value occurs in some seen class
        assert (np.array(c.attributes()) <= seen_on).all(), c.name


def test_render_is_deterministic_and_varied():
    c = demo_classes()[0]
    a, b = np.asarray(render(c, 7)), np.asarray(render(c, 7))
    assert a.shape == (256, 256, 3) and (a == b).all()
    assert np.abs(a.astype(int) - np.asarray(render(c, 8)).astype(int)).mean() > 10


def test_folders(tmp_path):
    write_training_folder(tmp_path / "train", per_class=2)
    seen = [c for c in demo_classes() if c.seen]
    assert sorted(p.name for p in (tmp_path / "train").iterdir() if p.is_dir()) == sorted(c.name for c in seen)
    assert len(list((tmp_path / "train" / seen[0].name).glob("*.jpg"))) == 2
    table = read_class_csv(tmp_path / "train" / "classes.csv", attribute_names=ATTRIBUTES)
    assert table.names == [c.name for c in demo_classes()] and table.origins.count("unseen") == 10
    photos = write_test_photos(tmp_path / "test", per_class=1)
    assert len(photos) == len(demo_classes()) and photos[0].name.split("__")[0] == demo_classes()[0].name
