"""Fast path for XGBoost and LightGBM models: their own predict on the rows that may change.

The scikit-learn wrappers (``XGBClassifier``, ``XGBRegressor``, ``LGBMClassifier``,
``LGBMRegressor``) get the :class:`~.boosting.RepredictPath` of scikit-learn's boosting:
the trees come from the booster's own model dump, every row's leaf in every tree from the
library's own leaf prediction, and the rows a permutation may change are re-predicted by
the wrapper's own response methods, so their outputs are bitwise the library's (float32
for XGBoost). LEAP's re-walk that narrows those rows follows the library's rules
(XGBoost: float32 ``x < threshold``, missing values by the default direction; LightGBM:
``x <= threshold``) and is used only when it reproduces every leaf of the unpermuted data;
LightGBM's missing values follow each split's ``missing_type`` (``None``: a NaN is read as
0.0; ``NaN``: a NaN takes the default side; ``Zero``: a zero or a NaN takes it, and values
within twice LightGBM's zero threshold are left to the model); categorical splits mark the
row for re-prediction.

For XGBoost's ``gbtree`` models LEAP also sums the float32 leaf values itself (the
intercept, then tree by tree into each tree's class, as XGBoost's CPU predictor does) and
has the wrapper transform those margins, passed as ``base_margin`` with the empty tree
range ``(n_rounds, n_rounds)``; certified bit for bit on the unpermuted rows (see
:class:`~.boosting.SumPath`). LightGBM's predict takes no margins, so it keeps
re-predicting.

Neither library is imported unless the model's class comes from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from leap.builtins.methods.permutation.boosting import (
    MAX_STACK_BYTES_PER_TREE_MODELS,
    NAN_AS_ZERO,
    NAN_SIDE,
    NAN_UNDECIDED,
    RepredictPath,
    TreeTable,
    build_path,
    certified_sums,
)

_LEAF = -1

#: The scikit-learn wrappers LEAP knows, by module and class name.
_XGBOOST = {"XGBClassifier", "XGBRegressor"}
_LIGHTGBM = {"LGBMClassifier", "LGBMRegressor"}


def _module(estimator: Any) -> str:
    return type(estimator).__module__ or ""


def native_booster_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> RepredictPath | None:
    """Factory: a :class:`~.boosting.RepredictPath` for XGBoost and LightGBM wrappers."""
    module, name = _module(estimator), type(estimator).__name__
    try:
        if module.split(".")[0] == "xgboost" and name in _XGBOOST:
            return _xgboost_path(estimator, X, base_outputs)
        if module.split(".")[0] == "lightgbm" and name in _LIGHTGBM:
            return _lightgbm_path(estimator, X, base_outputs)
    except Exception:  # an unexpected model dump: the model evaluates the copies itself
        return None
    return None


#: The per-node arrays of an XGBoost tree the path reads, with the dtypes they are kept in.
_TREE_ARRAYS = {
    "left_children": np.int32,
    "right_children": np.int32,
    "split_indices": np.int32,
    "split_conditions": np.float32,
    "default_left": np.bool_,
    "split_type": np.int8,
}


def _compact_tree(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object of the model dump; a tree keeps only its arrays the path reads."""
    obj = dict(pairs)
    if "left_children" not in obj or "split_conditions" not in obj:
        return obj
    tree: dict[str, Any] = {
        key: np.asarray(obj[key], dtype=dtype) for key, dtype in _TREE_ARRAYS.items()
    }
    tree["tree_param"] = obj.get("tree_param", {})
    return tree


def _xgboost_model(booster: Any) -> dict:
    """The booster's JSON model, each tree's arrays as compact NumPy arrays.

    Parsed tree by tree (an object hook): the full dump as Python lists was the largest
    allocation of the whole run (lists of floats for a dozen arrays per node).
    """
    raw = booster.save_raw(raw_format="json")
    text = raw.decode()
    del raw
    return json.loads(text, object_pairs_hook=_compact_tree)


def _xgboost_path(estimator, X, base_outputs):
    import xgboost

    booster = estimator.get_booster()
    model = _xgboost_model(booster)
    learner = model["learner"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") == "dart":
        gbm = gbm["gbtree"]
    if gbm.get("name") != "gbtree":
        return None  # gblinear: no trees
    trees = gbm["model"]["trees"]
    n_features = int(learner["learner_model_param"]["num_feature"])
    if n_features != X.shape[1] or not trees:
        return None
    missing = getattr(estimator, "missing", np.nan)
    if missing is None or not np.isnan(missing):
        return None  # a value other than NaN means "missing": not modelled here

    def make_table():
        parts = []
        for tree in trees:
            left = np.asarray(tree["left_children"], dtype=np.int64)
            parts.append(
                {
                    "left": left,
                    "right": np.asarray(tree["right_children"], dtype=np.int64),
                    "feature": np.asarray(tree["split_indices"], dtype=np.int64),
                    "threshold": np.asarray(tree["split_conditions"], dtype=np.float32),
                    "nan_left": np.asarray(tree["default_left"], dtype=bool),
                    "special": np.asarray(tree["split_type"], dtype=np.int64) != 0,
                }
            )
        return TreeTable.concatenate(parts, strict=True, float32=True)

    def leaves(table):
        local = booster.predict(xgboost.DMatrix(X, missing=np.nan), pred_leaf=True)
        local = np.asarray(local).reshape(X.shape[0], -1)
        return local.astype(np.int64) + table.roots[np.newaxis]

    path = build_path(
        estimator, X, base_outputs, make_table, leaves, serial=True,
        max_stack_bytes=MAX_STACK_BYTES_PER_TREE_MODELS,
    )  # fmt: skip
    if path is None or gbm.get("name") != "gbtree":
        return path  # DART weighs its trees at prediction: no plain sums
    return _xgboost_sums(estimator, X, path, gbm["model"]) or path


class XGBoostMargins:
    """XGBoost's own response methods on given margins, with no tree in the prediction.

    The wrapper's ``predict``/``predict_proba`` take ``base_margin`` and an
    ``iteration_range``; with the empty range ``(n_rounds, n_rounds)`` no tree adds to the
    margin, so the library applies its own objective transform (and the wrapper its
    post-processing) to exactly the margins LEAP summed. The input rows are then unread;
    an empty sparse matrix of the right width is passed.
    """

    calls_model = True  # serialised, with one OpenMP thread, like the model's other calls

    def __init__(self, model: Any, n_rounds: int, n_features: int) -> None:
        self.model = model
        self.n_rounds = n_rounds
        self.n_features = n_features

    def tied(self, raw: np.ndarray) -> np.ndarray:
        return np.zeros(raw.shape[0], dtype=bool)  # the library decides labels itself

    def outputs(self, raw: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        margins = raw[:, 0] if raw.shape[1] == 1 else raw
        m = raw.shape[0]
        pad = m < 2  # as own_outputs: at least two rows per call
        if pad:
            margins = np.concatenate([margins, margins[:1]])
        # Unread rows: an empty sparse matrix, not a dense one (the moved rows of several
        # groups times every column would be the path's largest array).
        from scipy.sparse import csr_matrix

        empty = csr_matrix((margins.shape[0], self.n_features), dtype=np.float32)
        span = (self.n_rounds, self.n_rounds)
        out = {}
        for name in methods:
            value = getattr(self.model, name)(empty, base_margin=margins, iteration_range=span)
            out[name] = np.asarray(value)[:m]
        return out


def _xgboost_sums(estimator: Any, X: np.ndarray, path: RepredictPath, model: dict):
    """XGBoost: the intercept, then each tree's float32 leaf value added to its class."""
    trees = model["trees"]
    info = np.asarray(model.get("tree_info", []), dtype=np.int64)
    if info.shape != (len(trees),):
        return None
    if any(int(t.get("tree_param", {}).get("size_leaf_vector", "1")) > 1 for t in trees):
        return None  # vector leaves (multi_output_tree)
    values = np.concatenate([np.asarray(t["split_conditions"], dtype=np.float32) for t in trees])
    n_rounds = estimator.get_booster().num_boosted_rounds()
    # With early stopping the wrapper predicts with fewer trees than the leaves cover: the
    # margins then differ from LEAP's sums, and the certification declines.
    span = (n_rounds, n_rounds)
    with path.single_threaded():
        init = np.asarray(estimator.predict(X[:2], output_margin=True, iteration_range=span))
        raw = np.asarray(estimator.predict(X, output_margin=True))
    init = init.reshape(2, -1)[0]
    if raw.dtype != np.float32 or init.dtype != np.float32:
        return None
    raw = raw.reshape(X.shape[0], -1)
    if not hasattr(estimator, "classes_"):
        # squared error and the like: the prediction is the margin, no call needed
        plain = certified_sums(path, values, init, info, Identity(), raw)
        if plain is not None:
            return plain
    link = XGBoostMargins(estimator, n_rounds, X.shape[1])
    return certified_sums(path, values, init, info, link, raw)


def _lightgbm_tree(structure: dict) -> tuple[dict[str, np.ndarray], dict[int, int]]:
    """One LightGBM tree as node arrays, and its leaf numbers (``leaf_index`` -> node)."""
    left: list[int]
    right: list[int]
    left, right, feature, threshold, nan_left, special = [], [], [], [], [], []
    nan_rule: list[int] = []
    zero_check: list[bool] = []
    leaf_node: dict[int, int] = {}
    stack = [(structure, -1, False)]
    while stack:
        node, parent, is_right = stack.pop()
        me = len(left)
        if parent >= 0:
            (right if is_right else left)[parent] = me
        left.append(_LEAF)
        right.append(_LEAF)
        if "leaf_index" in node or "split_index" not in node:
            leaf_node[int(node.get("leaf_index", 0))] = me
            feature.append(0)
            threshold.append(0.0)
            nan_left.append(False)
            special.append(False)
            nan_rule.append(NAN_SIDE)
            zero_check.append(False)
            continue
        feature.append(int(node["split_feature"]))
        numerical = node["decision_type"] == "<="
        threshold.append(float(node["threshold"]) if numerical else 0.0)
        nan_left.append(bool(node["default_left"]))
        special.append(not numerical)
        # LightGBM: a NaN at a split without missing values is read as 0.0; at a "Zero"
        # split, a zero (or a NaN) takes the default side; at a "NaN" split a NaN does.
        missing = str(node.get("missing_type"))
        nan_rule.append(
            {"None": NAN_AS_ZERO, "Zero": NAN_SIDE, "NaN": NAN_SIDE}.get(missing, NAN_UNDECIDED)
        )
        zero_check.append(missing != "None" and missing != "NaN")
        stack.append((node["right_child"], me, True))
        stack.append((node["left_child"], me, False))
    parts = {
        "left": np.asarray(left, dtype=np.int64),
        "right": np.asarray(right, dtype=np.int64),
        "feature": np.asarray(feature, dtype=np.int64),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "nan_left": np.asarray(nan_left, dtype=bool),
        "special": np.asarray(special, dtype=bool),
        "nan_rule": np.asarray(nan_rule, dtype=np.int8),
        "zero_check": np.asarray(zero_check, dtype=bool),
    }
    return parts, leaf_node


#: Boosting iterations dumped at a time: LightGBM's whole dump (Python dicts) is several
#: times the path's own arrays, and was a LightGBM run's peak memory.
DUMP_ITERATIONS = 8


def _lightgbm_dump(booster: Any):
    """The iterations ``dump_model()`` dumps (the best, if any), a few at a time."""
    total = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    for start in range(0, max(total, 1), DUMP_ITERATIONS):
        yield booster.dump_model(
            num_iteration=min(DUMP_ITERATIONS, total - start) or -1, start_iteration=start
        )


def _lightgbm_path(estimator, X, base_outputs):
    booster = estimator.booster_
    if booster.params.get("linear_tree"):
        return None  # linear leaves read features the path does not test
    dump, trees = None, []
    for part in _lightgbm_dump(booster):
        if dump is None:
            dump = {key: value for key, value in part.items() if key != "tree_info"}
            if int(dump.get("max_feature_idx", -1)) + 1 != X.shape[1]:
                return None
            if dump.get("pandas_categorical"):
                return None
        if '"leaf_coeff"' in json.dumps(part["tree_info"]):
            return None
        trees.extend(_lightgbm_tree(info["tree_structure"]) for info in part["tree_info"])
        del part
    if not trees:
        return None

    def make_table():
        return TreeTable.concatenate([parts for parts, _ in trees])

    def leaves(table):
        local = np.asarray(booster.predict(X, pred_leaf=True)).reshape(X.shape[0], -1)
        if local.shape[1] != len(trees):
            return np.empty((0, 0), dtype=np.int64)
        out = np.empty(local.shape, dtype=np.int64)
        for t, (_, leaf_node) in enumerate(trees):
            lookup = np.full(max(leaf_node) + 1, -1, dtype=np.int64)
            lookup[list(leaf_node)] = list(leaf_node.values())
            out[:, t] = lookup[local[:, t].astype(np.int64)] + table.roots[t]
        return out

    path = build_path(estimator, X, base_outputs, make_table, leaves, serial=True)
    if path is None or hasattr(estimator, "classes_"):
        return path  # probabilities: LightGBM's transform takes no margins from LEAP
    return _lightgbm_sums(booster, dump, trees, path) or path


class Identity:
    """A regressor whose prediction is its raw score (``l2``, ``l1``, ``reg:squarederror``)."""

    def tied(self, raw: np.ndarray) -> np.ndarray:
        return np.zeros(raw.shape[0], dtype=bool)

    def outputs(self, raw: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        if list(methods) != ["predict"]:
            raise ValueError("only predict")
        return {"predict": raw[:, 0].copy()}


def _lightgbm_sums(booster: Any, dump: dict, trees: list, path: RepredictPath):
    """LightGBM regression: float64 leaf values added tree by tree from zero.

    The leaf values are the booster's own doubles (``get_leaf_output``), not the dump's
    text; a regression objective with a transform (Poisson, gamma, ...) fails the check.
    """
    if int(dump.get("num_tree_per_iteration", 1)) != 1:
        return None
    values = np.zeros(path.table.left.shape[0], dtype=np.float64)
    for t, ((_, leaf_node), start) in enumerate(zip(trees, path.table.roots, strict=True)):
        for leaf, node in leaf_node.items():
            values[start + node] = booster.get_leaf_output(t, leaf)
    init = np.zeros(1, dtype=np.float64)
    tree_class = np.zeros(len(trees), dtype=np.int64)
    return certified_sums(path, values, init, tree_class, Identity(), None)
