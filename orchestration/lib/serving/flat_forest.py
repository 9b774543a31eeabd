"""A fitted tree ensemble's fraud probability for a few rows, without scikit-learn's per-call cost.

Scoring one payment over HTTP needs a prediction for 24 rows (the payment and, for its reason
codes, the payment with each feature replaced by its training mean). scikit-learn's
``RandomForestClassifier.predict_proba`` pays a fixed overhead per tree and call (input
validation, a thread pool, per-tree arrays) that dominates a few rows: with 100 trees it is most
of a request's CPU. :class:`FlatForest` holds every tree's nodes in flat arrays and walks all
(row, tree) pairs one level at a time with numpy, which for a few rows costs a small fraction of
that (figures: docs/OPERATING_NOTES.md).

It computes exactly what ``predict_proba`` computes, bit for bit: the input is cast to float32
as scikit-learn's trees do before comparing with the (float64) thresholds, each leaf's class-1
probability is its value over the sum of its values, and the trees' probabilities are added in
tree order and divided by the number of trees. For many rows scikit-learn's compiled traversal
is faster (:data:`FLAT_MAX_ROWS`); rows with missing values always go to scikit-learn.
"""

from __future__ import annotations

import numpy as np

FLAT_MAX_ROWS = 512
"""Up to this many rows :meth:`FlatForest.predict_proba1` is used; above, scikit-learn's."""


class FlatForest:
    """The trees of a fitted binary ``RandomForestClassifier`` or ``DecisionTreeClassifier``."""

    def __init__(self, model) -> None:
        trees = [e.tree_ for e in getattr(model, "estimators_", [model])]
        if len(model.classes_) != 2:
            raise ValueError("FlatForest scores binary classifiers only")
        sizes = np.array([t.node_count for t in trees])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.roots = offsets.astype(np.int64)
        self.n_trees = len(trees)
        self.n_features = int(model.n_features_in_)
        left, right, feature, threshold, p1 = [], [], [], [], []
        for offset, tree in zip(offsets, trees, strict=True):
            leaf = tree.children_left == -1
            # a leaf points at itself, so a walk that reached it stays there
            own = np.arange(tree.node_count) + offset
            left.append(np.where(leaf, own, tree.children_left + offset))
            right.append(np.where(leaf, own, tree.children_right + offset))
            feature.append(np.where(leaf, 0, tree.feature))
            threshold.append(tree.threshold)
            values = tree.value[:, 0, :]
            normalizer = values.sum(axis=1)
            normalizer[normalizer == 0.0] = 1.0
            p1.append(values[:, 1] / normalizer)
        self.left = np.concatenate(left).astype(np.int64)
        self.right = np.concatenate(right).astype(np.int64)
        self.feature = np.concatenate(feature).astype(np.int64)
        self.threshold = np.concatenate(threshold)
        self.p1 = np.concatenate(p1)
        self.depth = max(int(t.max_depth) for t in trees)

    def predict_proba1(self, X: np.ndarray) -> np.ndarray:
        """The class-1 probability of each row of ``X`` (already through the pipeline's
        preprocessing), as ``predict_proba(X)[:, 1]`` computes it."""
        X32 = np.asarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {X32.shape}")
        n_rows = X32.shape[0]
        rows = np.repeat(np.arange(n_rows), self.n_trees)
        node = np.tile(self.roots, n_rows)
        for _ in range(self.depth):
            go_left = X32[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        per_tree = self.p1[node].reshape(n_rows, self.n_trees)
        total = np.zeros(n_rows)
        for t in range(self.n_trees):  # tree order, as scikit-learn accumulates
            total += per_tree[:, t]
        return total / self.n_trees if self.n_trees > 1 else total
