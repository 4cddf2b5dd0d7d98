"""The tree path's compact layout: pre-order nodes, float32 thresholds, distinct values.

Every copy's outputs must be the model's own, bit for bit, also for values one float32 or
float64 step from a threshold and for forests whose nodes scikit-learn does not number in
pre-order (best-first growth, ``max_leaf_nodes``).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from leap.builtins.methods.permutation.trees import _float32_below, tree_path


def _near_thresholds(model, X, rng):
    """``X`` with many values put on, or one float32/float64 step beside, a threshold."""
    trees = model.estimators_ if hasattr(model, "estimators_") else [model]
    X = X.copy()
    for est in trees:
        tree = est.tree_
        for node in np.flatnonzero(tree.children_left >= 0)[:6]:
            t = tree.threshold[node]
            t32 = np.float32(t)
            near = [
                t,
                np.nextafter(t, np.inf),
                np.nextafter(t, -np.inf),
                float(t32),
                float(np.nextafter(t32, np.float32(np.inf))),
                float(np.nextafter(t32, np.float32(-np.inf))),
            ]
            rows = rng.choice(X.shape[0], size=len(near), replace=False)
            X[rows, tree.feature[node]] = near
    return X


@pytest.mark.parametrize(
    ("model", "method"),
    [
        (RandomForestRegressor(8, max_leaf_nodes=15, random_state=0), "predict"),
        (ExtraTreesClassifier(8, random_state=0), "predict_proba"),
        (DecisionTreeRegressor(random_state=0), "predict"),
        (DecisionTreeClassifier(max_leaf_nodes=9, random_state=0), "predict_proba"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_tree_outputs_are_the_models_bit_for_bit_near_thresholds(model, method, kernels):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(150, 4))
    target = X[:, 0] - X[:, 1] * X[:, 2]
    y = target if method == "predict" else np.digitize(target, [-0.5, 0.5])
    model.fit(X, y)
    X = _near_thresholds(model, X, rng)
    trees = model.estimators_ if hasattr(model, "estimators_") else [model]
    if getattr(model, "max_leaf_nodes", None):
        # best-first growth: scikit-learn's node numbers are not pre-order, LEAP's are
        split = np.flatnonzero(trees[0].tree_.children_left >= 0)
        assert np.any(trees[0].tree_.children_left[split] != split + 1)
    path = tree_path(model, X, {method: getattr(model, method)(X)})
    assert path is not None
    own = np.asarray(model.apply(X)).reshape(X.shape[0], -1)
    assert np.array_equal(path.model_nodes(own), path.reached_nodes())
    assert path.values.shape[0] <= sum(est.tree_.n_leaves for est in trees)
    orders = np.stack([np.random.default_rng(s).permutation(len(X)) for s in range(3)])
    for cols in ([0], [1, 3], [0, 1, 2, 3]):
        out, exact = path.outputs(np.array(cols), orders)
        assert exact.all()
        for r in range(3):
            permuted = X.copy()
            permuted[:, cols] = X[orders[r]][:, cols]
            expected = getattr(model, method)(permuted)
            assert out[method][r].dtype == expected.dtype
            assert np.array_equal(out[method][r].view(np.uint64), expected.view(np.uint64))


def test_float32_thresholds_compare_as_the_float64_ones():
    """``x <= t`` and ``x <= _float32_below(t)`` agree for every float32 ``x`` near ``t``."""
    rng = np.random.default_rng(0)
    t = np.concatenate(
        [
            rng.normal(size=200) * 10.0 ** rng.integers(-40, 40, size=200),
            [0.0, -0.0, 1e-45, -1e-45, 3.5e38, -3.5e38, 1e300, -1e300, 2.0**-149],
            np.float32(rng.normal(size=50)).astype(np.float64),  # float32 thresholds as is
        ]
    )
    below = _float32_below(t)
    assert below.dtype == np.float32
    assert np.all(below.astype(np.float64) <= t)
    with np.errstate(over="ignore"):  # steps beyond float32's range are infinite
        up = np.nextafter(below, np.float32(np.inf))
        down = np.nextafter(below, np.float32(-np.inf))
    x = np.stack([below, up, down], axis=1)
    assert np.array_equal(x <= t[:, None], x <= below[:, None])


def test_tree_path_reads_the_rows_without_copying_them():
    X = np.random.default_rng(1).normal(size=(60, 3))
    model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, X[:, 0])
    path = tree_path(model, X, {"predict": model.predict(X)})
    assert path is not None and path.X is X
    assert path.nan_left.size == 0  # no missing value: no table of where they go
