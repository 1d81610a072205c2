"""GZSL metrics against hand-computed values and brute force."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from dkgzsl_app.trainer import metrics as m

# 6 images, 4 classes; seen = {0, 1}, unseen = {2, 3}. Integer scores keep every gap exact.
#            class:  0  1  2  3     label  best seen (ps, bs)  best unseen (pu, bu)  gap d = bs - bu
HAND_SCORES = np.array([
    [6, 1, 2, 1],  # 0      (0, 6)               (2, 2)                 4
    [3, 4, 2, 1],  # 0      (1, 4)               (2, 2)                 2
    [1, 5, 3, 1],  # 1      (1, 5)               (2, 3)                 2
    [5, 1, 3, 1],  # 2      (0, 5)               (2, 3)                 2
    [1, 2, 1, 6],  # 3      (1, 2)               (3, 6)                -4
    [4, 1, 3, 2],  # 3      (0, 4)               (2, 3)                 1
], dtype=np.float64)
HAND_LABELS = np.array([0, 0, 1, 2, 3, 3])
HAND_SEEN = np.array([True, True, False, False])
# gamma = 0 predicts 0, 1, 1, 0, 3, 0:
#   S = mean(class 0: 1/2, class 1: 1/1) = 0.75;  U = mean(class 2: 0/1, class 3: 1/2) = 0.25
#   H = 2 * 0.75 * 0.25 / 1.0 = 0.375.  (Overall accuracy would be 3/6 = 0.5.)
# gamma = 3 (images with d < 3 switch to pu): predicts 0, 2, 2, 2, 3, 2:
#   S = mean(1/2, 0/1) = 0.25;  U = mean(1/1, 1/2) = 0.75;  H = 0.375.
# Curve states (distinct gaps -4 < 1 < 2 < 4), as (U, S):
#   g < -4: (0, .75); -4 < g < 1: (.25, .75); 1 < g < 2: (.25, .75); 2 < g < 4: (.75, .25); g > 4: (.75, 0)
# AUSUC = .25 * .75 + .5 * (.75 + .25) / 2 = 0.1875 + 0.25 = 0.4375.


def _brute(scores, labels, seen, gammas):
    out = np.array([m.gzsl_accuracy(scores, labels, seen, g)[:2] for g in gammas])
    return out[:, 0], out[:, 1]


def _random_case(seed, n=150, c=9, scale=1.0):
    rng = np.random.default_rng(seed)
    seen = rng.random(c) < 0.6
    seen[0], seen[-1] = True, False  # both sides non-empty, seen classes not all first
    labels = rng.integers(0, c, n)
    scores = rng.standard_normal((n, c)) * scale
    scores[np.arange(n), labels] += scale  # informative, not perfect
    scores += 0.7 * scale * seen  # seen-class bias, as in real GZSL
    return scores, labels, seen


def test_per_class_accuracy_differs_from_overall_on_imbalanced_classes():
    labels = np.array([0] * 9 + [1])
    pred = np.array([0] * 9 + [0])
    assert np.mean(pred == labels) == pytest.approx(0.9)
    assert m.per_class_accuracy(pred, labels) == pytest.approx(0.5)  # (9/9 + 0/1) / 2
    assert m.per_class_accuracy(pred, labels, classes=[1]) == 0.0
    assert m.per_class_accuracy(pred, labels, classes=[0, 5]) == 1.0  # class 5 has no images
    assert math.isnan(m.per_class_accuracy(pred, labels, classes=[5]))
    assert math.isnan(m.per_class_accuracy([], []))


def test_hand_case_gzsl_czsl_and_calibration():
    assert list(m.calibrated_predictions(HAND_SCORES, HAND_SEEN, 0.0)) == [0, 1, 1, 0, 3, 0]
    assert list(m.calibrated_predictions(HAND_SCORES, HAND_SEEN, 3.0)) == [0, 2, 2, 2, 3, 2]
    assert m.gzsl_accuracy(HAND_SCORES, HAND_LABELS, HAND_SEEN) == pytest.approx((0.75, 0.25, 0.375))
    assert m.gzsl_accuracy(HAND_SCORES, HAND_LABELS, HAND_SEEN, 3.0) == pytest.approx((0.25, 0.75, 0.375))
    # CZSL over classes {2, 3}: image 3 -> 2 (right), 4 -> 3 (right), 5 -> 2 (wrong): mean(1, 1/2)
    assert m.czsl_accuracy(HAND_SCORES, HAND_LABELS, HAND_SEEN) == pytest.approx(0.75)


def test_hand_case_curve_and_ausuc():
    gammas, s, u = m.seen_unseen_curve(HAND_SCORES, HAND_LABELS, HAND_SEEN)
    assert np.all(np.diff(gammas) > 0)
    np.testing.assert_allclose(s, [0.75, 0.75, 0.75, 0.25, 0.0])
    np.testing.assert_allclose(u, [0.0, 0.25, 0.25, 0.75, 0.75])
    assert m.ausuc(HAND_SCORES, HAND_LABELS, HAND_SEEN) == pytest.approx(0.4375)


def test_hand_case_choose_gamma_ties_go_to_smallest_abs_gamma():
    # States -4<g<1, 1<g<2 and 2<g<4 all reach H = 0.375; gamma = 0 lies in the first.
    assert m.choose_gamma(HAND_SCORES, HAND_LABELS, HAND_SEEN) == pytest.approx((0.0, 0.375))
    assert m.choose_gamma(HAND_SCORES, HAND_LABELS, HAND_SEEN, grid=[-3.0, 3.5, 2.5]) == pytest.approx(
        (2.5, 0.375)
    )


def test_choose_gamma_fixes_a_seen_biased_model():
    rng = np.random.default_rng(0)
    n, c = 400, 10
    seen = np.arange(c) < 6
    labels = rng.integers(0, c, n)
    scores = rng.standard_normal((n, c)) * 0.3
    scores[np.arange(n), labels] += 2.0
    scores += 5.0 * seen  # every unseen image loses to some seen class at gamma = 0
    s0, u0, h0 = m.gzsl_accuracy(scores, labels, seen)
    assert u0 == 0.0 and h0 == 0.0
    gamma, h = m.choose_gamma(scores, labels, seen)
    assert h > 0.9 and 3.0 < gamma < 7.0
    assert h == pytest.approx(m.gzsl_accuracy(scores, labels, seen, gamma)[2])
    dense = max(m.gzsl_accuracy(scores, labels, seen, g)[2] for g in np.linspace(-2, 10, 241))
    assert h >= dense - 1e-12


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_curve_equals_brute_force(seed, scale):
    scores, labels, seen = _random_case(seed, scale=scale)
    if seed % 2:
        scores = scores.astype(np.float32)  # as a model would hand them over
    gammas, s, u = m.seen_unseen_curve(scores, labels, seen)
    bs, bu = _brute(scores, labels, seen, gammas)
    np.testing.assert_allclose(s, bs, atol=1e-12)
    np.testing.assert_allclose(u, bu, atol=1e-12)
    assert u[0] == 0.0 and s[-1] == 0.0  # runs from everything seen to everything unseen
    assert np.all(np.diff(s) <= 1e-12) and np.all(np.diff(u) >= -1e-12)
    # no gamma off the curve does better than its best H
    off = np.linspace(gammas[0] - 1, gammas[-1] + 1, 101) + 1e-7 * scale
    h_best = m.choose_gamma(scores, labels, seen)[1]
    assert h_best >= max(m.harmonic_mean(*p) for p in zip(*_brute(scores, labels, seen, off))) - 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_tie_rule_matches_argmax_exactly_at_breakpoints(seed):
    # Small integer scores: many exact ties, and float arithmetic on them is exact.
    rng = np.random.default_rng(100 + seed)
    n, c = 120, 7
    scores = rng.integers(0, 4, (n, c)).astype(np.float64)
    labels = rng.integers(0, c, n)
    seen = rng.random(c) < 0.5
    seen[1], seen[0] = True, False  # an unseen class with a lower index than a seen one
    d, ps, pu = m._gaps(scores, seen)
    grid = np.unique(d)
    s, u = m._accuracy_at(d, ps, pu, labels, seen, grid)
    bs, bu = _brute(scores, labels, seen, grid)
    np.testing.assert_allclose(s, bs, atol=1e-12)
    np.testing.assert_allclose(u, bu, atol=1e-12)


def test_curve_with_infinite_scores_matches_brute_force():
    scores, labels, seen = _random_case(7, n=60)
    scores[:5, seen] = -np.inf  # no finite seen score
    scores[5:10, ~seen] = -np.inf
    scores[10:15] = -np.inf  # all tied at every gamma
    gammas, s, u = m.seen_unseen_curve(scores, labels, seen)
    bs, bu = _brute(scores, labels, seen, gammas)
    np.testing.assert_allclose(s, bs, atol=1e-12)
    np.testing.assert_allclose(u, bu, atol=1e-12)


def test_perfect_scores_give_ausuc_one():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 8, 50)
    seen = np.arange(8) % 2 == 0
    probs = np.full((50, 8), 0.05)
    probs[np.arange(50), labels] = 0.65
    assert m.ausuc(probs, labels, seen) == pytest.approx(1.0)
    res = m.evaluate_gzsl(probs, labels, seen)
    assert (res.seen_acc, res.unseen_acc, res.harmonic, res.czsl, res.ausuc) == pytest.approx((1, 1, 1, 1, 1))


def test_missing_sides_and_single_class():
    seen_only = HAND_LABELS < 2
    s, u, h = m.gzsl_accuracy(HAND_SCORES[seen_only], HAND_LABELS[seen_only], HAND_SEEN)
    assert s == pytest.approx(0.75) and math.isnan(u) and h == 0.0
    res = m.evaluate_gzsl(HAND_SCORES[seen_only], HAND_LABELS[seen_only], HAND_SEEN)
    assert math.isnan(res.czsl) and math.isnan(res.ausuc)
    assert json.loads(json.dumps(res.as_dict()))["unseen_acc"] is None
    assert m.choose_gamma(HAND_SCORES[seen_only], HAND_LABELS[seen_only], HAND_SEEN) == (0.0, 0.0)

    s, u, h = m.gzsl_accuracy(HAND_SCORES[~seen_only], HAND_LABELS[~seen_only], HAND_SEEN)
    assert math.isnan(s) and u == pytest.approx(0.25) and h == 0.0
    _, s_curve, u_curve = m.seen_unseen_curve(HAND_SCORES[~seen_only], HAND_LABELS[~seen_only], HAND_SEEN)
    assert np.isnan(s_curve).all() and u_curve[-1] == pytest.approx(0.75)  # mean(1/1, 1/2)

    one = np.ones((3, 1))
    for seen in ([True], [False]):
        g, s, u = m.seen_unseen_curve(one, np.zeros(3, dtype=int), np.array(seen))
        assert g.size == 1 and np.nanmax(np.r_[s, u]) == 1.0
    assert m.evaluate_gzsl(one, np.zeros(3, dtype=int), np.array([False])).czsl == 1.0


def test_no_images():
    empty = np.zeros((0, 4))
    s, u, h = m.gzsl_accuracy(empty, np.zeros(0, dtype=int), HAND_SEEN)
    assert math.isnan(s) and math.isnan(u) and h == 0.0
    assert m.choose_gamma(empty, np.zeros(0, dtype=int), HAND_SEEN) == (0.0, 0.0)
    assert math.isnan(m.ausuc(empty, np.zeros(0, dtype=int), HAND_SEEN))


def test_harmonic_mean():
    assert m.harmonic_mean(0.5, 0.5) == 0.5
    assert m.harmonic_mean(0.0, 0.0) == 0.0
    assert m.harmonic_mean(math.nan, 0.4) == 0.0
    assert m.harmonic_mean(1.0, 0.25) == pytest.approx(0.4)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="seen"):
        m.gzsl_accuracy(HAND_SCORES, HAND_LABELS, HAND_SEEN[:3])
    with pytest.raises(ValueError, match="labels"):
        m.gzsl_accuracy(HAND_SCORES, HAND_LABELS + 4, HAND_SEEN)
    with pytest.raises(ValueError, match="NaN"):
        m.ausuc(np.full((6, 4), np.nan), HAND_LABELS, HAND_SEEN)


def test_plot_writes_a_png(tmp_path):
    gammas, s, u = m.seen_unseen_curve(HAND_SCORES, HAND_LABELS, HAND_SEEN)
    out = tmp_path / "plots" / "curve.png"
    m.plot_seen_unseen_curve(gammas, s, u, out, title="hand case", mark=(0.25, 0.75))
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 100
        assert len(img.convert("RGB").getcolors(1 << 16)) > 2  # something was drawn
    assert [p.name for p in out.parent.iterdir()] == ["curve.png"]  # no temp file left
    m.plot_seen_unseen_curve(gammas, s * np.nan, u, out)  # a side without images: axes only


def test_plot_into_an_unwritable_place_is_a_dkgzsl_error(tmp_path):
    """The plot goes through the one atomic writer: a bad path is a DataError naming it, no temp file left."""
    from dkgzsl_app.models.errors import DataError

    gammas, s, u = np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(DataError, match="not-a-folder"):
        m.plot_seen_unseen_curve(gammas, s, u, blocker / "curve.png")
    with pytest.raises(DataError, match="folder"):
        m.plot_seen_unseen_curve(gammas, s, u, tmp_path)  # a folder, not a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_gamma_for_seen_rate_transfers_an_operating_point():
    """The largest gamma keeping at least the given share of images on the seen side, midway between gaps."""
    seen = np.array([True, True, False])
    # gaps d = best seen - best unseen: 0.6, 0.2, -0.1, 0.4
    scores = np.array([[0.8, 0.0, 0.2], [0.5, 0.1, 0.3], [0.3, 0.3, 0.4], [0.0, 0.7, 0.3]])
    assert m.gamma_for_seen_rate(scores, seen, 0.5) == pytest.approx(0.3)  # between 0.2 and 0.4
    assert m.seen_side_rate(scores, seen, 0.3) == 0.5
    assert m.gamma_for_seen_rate(scores, seen, 0.75) == pytest.approx(0.05)
    assert m.seen_side_rate(scores, seen, m.gamma_for_seen_rate(scores, seen, 1.0)) == 1.0
    assert m.seen_side_rate(scores, seen, m.gamma_for_seen_rate(scores, seen, 0.0)) == 0.0
    assert m.seen_side_rate(scores, seen, m.gamma_for_seen_rate(scores, seen, 0.6)) == 0.75  # at least 0.6
