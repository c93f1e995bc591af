"""The official FashionAI AP/mAP and the plain metrics, against hand-computed values and a slow loop."""

import math

import numpy as np
import pytest

from fashionai.core import metrics

# The worked example of the metric text: max probs .9 .8 .7 .6 -> correct, wrong, correct, `m`.
EXAMPLE_PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
EXAMPLE_LABELS = ["yn", "yn", "yn", "ym"]


def slow_official_ap(probs, labels):
    """The metric text transcribed literally: a Python loop over thresholds and rows."""
    rows = []
    for p, label in zip(probs.tolist(), labels):
        top = max(p)
        rows.append((top, label[p.index(top)]))
    precisions = []
    for t in sorted({top for top, _ in rows}):
        hits = [hit for top, hit in rows if top >= t]
        correct, wrong = hits.count("y"), hits.count("n")
        if correct + wrong:
            precisions.append(correct / (correct + wrong))
    return sum(precisions) / len(precisions) if precisions else math.nan


def random_task(rng, n, k, decimals):
    """Random probabilities rounded to `decimals` (ties) and labels with one `y` and some `m`."""
    probs = np.round(rng.dirichlet(np.ones(k), size=n), decimals)
    labels = []
    for _ in range(n):
        chars = ["n"] * k
        y, m = rng.choice(k, size=2, replace=False)
        chars[y] = "y"
        if rng.random() < 0.3:
            chars[m] = "m"
        labels.append("".join(chars))
    return probs, labels


def test_worked_example():
    assert metrics.official_ap(EXAMPLE_PROBS, EXAMPLE_LABELS) == pytest.approx((2 / 3 + 2 / 3 + 1 / 2 + 1) / 4)
    assert round(metrics.official_ap(EXAMPLE_PROBS, EXAMPLE_LABELS), 4) == 0.7083
    assert metrics.basic_precision(EXAMPLE_PROBS, EXAMPLE_LABELS) == pytest.approx(2 / 3)


def test_perfect_prediction_is_one():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    labels = ["nyn", "ynn", "nny", "mym"]
    assert metrics.official_ap(probs, labels) == 1.0
    assert metrics.basic_precision(probs, labels) == 1.0


def test_tied_maxima_form_one_threshold():
    # p_max .9 (correct), .9 (wrong), .5 (correct): thresholds .9 -> 1/2, .5 -> 2/3.
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.4]])
    labels = ["yn", "yn", "yn"]
    expected = (1 / 2 + 2 / 3) / 2
    assert metrics.official_ap(probs, labels) == pytest.approx(expected)
    # the order of tied rows does not matter
    assert metrics.official_ap(probs[[1, 0, 2]], [labels[i] for i in (1, 0, 2)]) == pytest.approx(expected)
    # untied (.9 correct before .8 wrong) it would be (1 + 1/2 + 2/3) / 3
    untied = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.4]])
    assert metrics.official_ap(untied, labels) == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)


def test_maybe_rows():
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.2, 0.7]])
    # row 1: argmax on `m` -> not counted; row 2: argmax on `n` of a row that has an `m` -> wrong
    labels = ["ynn", "myn", "ymn"]
    assert metrics.official_ap(probs, labels) == pytest.approx((1 + 1 + 1 / 2) / 3)
    assert metrics.basic_precision(probs, labels) == pytest.approx(1 / 2)


def test_threshold_with_only_maybe_rows_is_skipped():
    # t = .9 outputs only the `m` row (0/0, skipped); t = .8 -> 1/1; t = .3 -> 1/2.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    labels = ["my", "yn", "yn"]
    assert metrics.official_ap(probs, labels) == pytest.approx((1 + 1 / 2) / 2)
    assert metrics.official_ap(probs, labels) == pytest.approx(slow_official_ap(probs, labels))


def test_task_whose_argmaxes_all_hit_maybe_has_no_ap():
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    labels = ["my", "ym"]
    assert math.isnan(metrics.official_ap(probs, labels))
    assert math.isnan(metrics.basic_precision(probs, labels))
    mean, aps = metrics.official_map({"a": (probs, labels), "b": (EXAMPLE_PROBS, EXAMPLE_LABELS)})
    assert math.isnan(aps["a"]) and mean == pytest.approx(aps["b"])


def test_invariant_to_monotone_rescaling():
    rng = np.random.default_rng(3)
    probs, labels = random_task(rng, 200, 6, decimals=2)
    ap = metrics.official_ap(probs, labels)
    # an increasing function applied elementwise keeps every argmax and the order of the maxima
    assert metrics.official_ap(7 * probs**3 + 2, labels) == pytest.approx(ap, abs=1e-12)
    # shrinking the non-max entries of each row changes nothing either
    shrunk = probs * rng.uniform(0.1, 1.0, size=probs.shape)
    top = probs.argmax(axis=1)
    shrunk[np.arange(len(probs)), top] = probs[np.arange(len(probs)), top]
    assert metrics.official_ap(shrunk, labels) == pytest.approx(ap, abs=1e-12)
    # ...but reversing the order of the maxima does (the test can fail)
    flipped = probs.copy()
    flipped[np.arange(len(probs)), top] = 2 - probs[np.arange(len(probs)), top]
    assert metrics.official_ap(flipped, labels) != pytest.approx(ap, abs=1e-6)


@pytest.mark.parametrize("seed,n,k,decimals", [(0, 50, 2, 1), (1, 300, 6, 2), (2, 500, 10, 3), (3, 40, 5, 8)])
def test_agrees_with_slow_loop(seed, n, k, decimals):
    probs, labels = random_task(np.random.default_rng(seed), n, k, decimals)
    assert metrics.official_ap(probs, labels) == pytest.approx(slow_official_ap(probs, labels), abs=1e-12)


def test_map_is_the_unweighted_mean():
    perfect = (np.array([[0.8, 0.2]]), ["yn"])  # 1 row, AP 1
    mean, aps = metrics.official_map({"small": perfect, "large": (EXAMPLE_PROBS, EXAMPLE_LABELS)})
    assert aps == {"small": 1.0, "large": pytest.approx(17 / 24)}
    assert mean == pytest.approx((1 + 17 / 24) / 2)  # a row-weighted mean would be (1 + 4 * 17/24) / 5
    bp, _ = metrics.mean_basic_precision({"small": perfect, "large": (EXAMPLE_PROBS, EXAMPLE_LABELS)})
    assert bp == pytest.approx((1 + 2 / 3) / 2)


def test_plain_metrics():
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.1, 0.7, 0.2]])
    y = [0, 2, 0, 1]  # true class ranks 1, 2, 3, 1
    assert metrics.ranking_ap(probs, y) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1) / 4)
    assert metrics.accuracy(probs, y) == pytest.approx(2 / 4)
    np.testing.assert_array_equal(metrics.confusion(probs, y, 3), [[1, 0, 1], [0, 1, 0], [1, 0, 0]])
    report = metrics.per_class_report(probs, y, 3)
    np.testing.assert_allclose(report["precision"], [1 / 2, 1, 0])
    np.testing.assert_allclose(report["recall"], [1 / 2, 1, 0])
    np.testing.assert_array_equal(report["support"], [2, 1, 1])


def test_label_indices():
    np.testing.assert_array_equal(metrics.label_indices(["nyn", "mny", "ynm"], 3), [1, 2, 0])
    with pytest.raises(ValueError, match="exactly one"):
        metrics.label_indices(["nyy"], 3)


@pytest.mark.parametrize("probs,labels,match", [
    (np.array([[0.5, 0.5]]), ["ynn"], "3 characters, expected 2"),
    (np.array([[0.5, 0.5]]), ["yx"], "other than y/n/m"),
    (np.array([[0.5, 0.5]]), ["yn", "ny"], "1 rows but there are 2 labels"),
    (np.array([[np.nan, 0.5]]), ["yn"], "non-finite"),
    (np.array([0.5, 0.5]), ["yn"], "shape"),
])
def test_bad_input_is_a_value_error(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        metrics.official_ap(probs, labels)
