"""Validation numbers from predicted probabilities: confusion matrix, per-class scores, worst cases.

Pure numpy so that it runs (and is tested) without TensorFlow. Every number returned is a plain
Python int or float, so the dicts go straight into metrics.json.
"""

from collections.abc import Sequence

import numpy as np


def _labels(y_true: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(y_true)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"y_true must be a 1-D array of class indices, got shape {labels.shape}")
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError("y_true must hold integer class indices")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"y_true holds class indices outside 0..{n_classes - 1}")
    return labels


def _probability_matrix(y_prob: np.ndarray, n_rows: int) -> np.ndarray:
    """(n, k) class probabilities; a binary model's sigmoid output p becomes [1 - p, p]."""
    prob = np.asarray(y_prob, dtype=np.float64)
    if prob.ndim == 2 and prob.shape[1] == 1:
        prob = prob[:, 0]
    if prob.ndim == 1:
        prob = np.column_stack([1.0 - prob, prob])
    if prob.ndim != 2 or prob.shape[1] < 2:
        raise ValueError(f"y_prob must be (n,), (n, 1) or (n, k>=2), got shape {prob.shape}")
    if prob.shape[0] != n_rows:
        raise ValueError(f"y_prob has {prob.shape[0]} rows but y_true has {n_rows} labels")
    return prob


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # A class nobody predicted (or nobody belongs to) scores 0.0, as scikit-learn's
    # zero_division=0 does, instead of a NaN that would break the JSON and the HTML table.
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_summary(
    y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Accuracy, confusion matrix (rows = true class, columns = predicted), per-class scores.

    `y_prob` is (n, k) softmax output, or for two classes the (n,) / (n, 1) sigmoid probability
    of class 1. The predicted class is the argmax; a sigmoid output of exactly 0.5 counts as
    class 0, matching Keras' `binary_accuracy` threshold (> 0.5 is class 1).
    """
    names = [str(name) for name in class_names]
    if len(names) < 2:
        raise ValueError("at least two class names are needed")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    k = len(names)
    labels = _labels(y_true, k)
    prob = _probability_matrix(y_prob, labels.size)
    if prob.shape[1] != k:
        raise ValueError(f"y_prob has {prob.shape[1]} columns for {k} class names")

    predicted = np.argmax(prob, axis=1)
    matrix = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _ratio(hits, matrix.sum(axis=0).astype(np.float64))
    recall = _ratio(hits, support.astype(np.float64))
    f1 = _ratio(2.0 * precision * recall, precision + recall)

    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "accuracy": float(hits.sum() / labels.size) if labels.size else 0.0,
        "confusionMatrix": matrix.astype(int).tolist(),
        "perClass": per_class,
        "macroF1": float(f1.mean()),
    }


def worst_predictions(y_true: np.ndarray, y_prob: np.ndarray, limit: int = 24) -> list[dict]:
    """The misclassified samples that gave their true class the least probability, worst first.

    Correctly classified samples are never listed, so fewer than `limit` entries come back when
    the model makes fewer mistakes. Ties keep the lower sample index first.
    """
    prob = np.asarray(y_prob, dtype=np.float64)
    n_rows = prob.shape[0] if prob.ndim else 0
    prob = _probability_matrix(prob, n_rows)
    labels = _labels(y_true, prob.shape[1])
    if labels.size != n_rows:
        raise ValueError(f"y_prob has {n_rows} rows but y_true has {labels.size} labels")
    if limit <= 0 or not labels.size:
        return []

    rows = np.arange(labels.size)
    predicted = np.argmax(prob, axis=1)
    true_p = prob[rows, labels]
    wrong = np.flatnonzero(predicted != labels)
    # Stable sort, so equal probabilities keep index order and the report is reproducible.
    order = wrong[np.argsort(true_p[wrong], kind="stable")][:limit]
    return [
        {
            "index": int(i),
            "trueIndex": int(labels[i]),
            "predictedIndex": int(predicted[i]),
            "trueProbability": float(true_p[i]),
            "predictedProbability": float(prob[i, predicted[i]]),
        }
        for i in order
    ]
