"""Metrics against hand-computed cases and scikit-learn on random data."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from benchmark import metrics

C = 10


@pytest.fixture(scope="module")
def random_case():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, size=2000)
    logits = rng.normal(size=(2000, C))
    logits[np.arange(2000), labels] += rng.uniform(0, 3, size=2000)  # informative but imperfect
    return logits, labels


def test_hand_computed_small_case():
    # 3 classes; rows = samples. Predictions: 0,1,1,2 ; truth: 0,1,2,2
    logits = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 1.0, 0.5], [0, 0, 4.0]])
    labels = np.array([0, 1, 2, 2])
    assert metrics.accuracy(logits, labels) == 0.75
    cm = metrics.confusion_matrix(logits, labels, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    scores = metrics.per_class_scores(cm)
    assert scores["precision"] == [1.0, 0.5, 1.0]
    assert scores["recall"] == [1.0, 1.0, 0.5]
    assert scores["f1"] == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert scores["support"] == [1, 1, 2]
    # cross-entropy of the first sample alone: -log softmax([2,0,0])[0]
    assert metrics.cross_entropy(logits[:1], labels[:1]) == pytest.approx(-np.log(np.exp(2) / (np.exp(2) + 2)))
    assert metrics.top_confusions(cm) == [{"true": 2, "pred": 1, "count": 1}]


def test_perfect_and_torch_inputs():
    labels = torch.arange(C).repeat(5)
    logits = torch.nn.functional.one_hot(labels, C).float() * 10
    report = metrics.classification_report(logits, labels, C)
    assert report["accuracy"] == 1.0
    assert report["roc_auc"]["macro"] == 1.0
    assert np.trace(np.array(report["confusion_matrix"])) == 50
    assert report["top_confusions"] == []


def test_against_sklearn(random_case):
    logits, labels = random_case
    probs = metrics.softmax(logits)
    pred = logits.argmax(1)
    assert metrics.accuracy(logits, labels) == pytest.approx(skm.accuracy_score(labels, pred))
    assert metrics.cross_entropy(logits, labels) == pytest.approx(skm.log_loss(labels, probs, labels=range(C)))
    cm = metrics.confusion_matrix(logits, labels, C)
    assert (cm == skm.confusion_matrix(labels, pred, labels=range(C))).all()
    p, r, f, s = skm.precision_recall_fscore_support(labels, pred, labels=range(C), zero_division=0)
    scores = metrics.per_class_scores(cm)
    np.testing.assert_allclose(scores["precision"], p)
    np.testing.assert_allclose(scores["recall"], r)
    np.testing.assert_allclose(scores["f1"], f)
    assert scores["support"] == s.tolist()
    auc = metrics.roc_auc(logits, labels, C)
    sk_auc = [skm.roc_auc_score(labels == c, probs[:, c]) for c in range(C)]
    np.testing.assert_allclose(auc["per_class"], sk_auc, rtol=1e-10)
    assert auc["macro"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def test_roc_curve_matches_sklearn_points(random_case):
    logits, labels = random_case
    probs = metrics.softmax(logits)
    fpr, tpr = metrics.roc_curve(probs[:, 3], labels == 3)
    sk_fpr, sk_tpr, _ = skm.roc_curve(labels == 3, probs[:, 3], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    curves = metrics.roc_curves(logits, labels, C, points=11)
    assert len(curves["fpr"]) == len(curves["tpr"]) == C and all(len(f) == 11 for f in curves["fpr"])
    assert all(t[0] >= 0 and t[-1] == 1.0 and t == sorted(t) for t in curves["tpr"])


def test_calibration_hand_computed():
    # two confident-and-right samples, two unsure-and-wrong ones
    logits = np.log(np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]))
    labels = np.array([0, 0, 1, 1])
    cal = metrics.calibration(logits, labels, bins=10)
    # bin (0.5,0.6]: conf 0.6, acc 0 ; bin (0.8,0.9]: conf 0.9, acc 1 -> ECE = 0.5*0.6 + 0.5*0.1
    assert cal["ece"] == pytest.approx(0.35)
    assert sum(cal["count"]) == 4


def test_samples_are_fixed_by_seed(random_case):
    logits, labels = random_case
    a = metrics.sample_predictions(logits, labels, n=8, seed=0)
    b = metrics.sample_predictions(logits, labels, n=8, seed=0)
    c = metrics.sample_predictions(logits, labels, n=8, seed=1)
    assert a == b and a != c and len(a) == 8
    assert all(s["label"] == labels[s["index"]] for s in a)
