"""Scorers evaluated for many copies without scikit-learn's per-call input validation.

Replaying a scorer (:func:`.scoring.score_outputs`) calls the scikit-learn metric once per
copy; for linear models its input validation costs several times what the outputs do.
:class:`BatchedScorer` computes the same metrics from the stacked outputs of many copies
with the metric's own arithmetic: R², mean squared / absolute error and its root, log loss
(with its clipping to ``[eps, 1 - eps]``), the Brier score, binary and one-vs-rest macro
ROC AUC (sorted thresholds with ties, trapezoid) and binary average precision (step sum).
It is used only when its value equals the scorer's on the undisturbed outputs and on the
first copies (within :data:`TOLERANCE`); anything else falls back to the replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: Largest difference to the scorer's own value for which the batched value is used.
TOLERANCE = 1e-13

#: Copies checked against the scorer itself before the batched values are trusted.
CHECKED_COPIES = 3


def _average(values: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Per copy (rows of ``values``): the mean, weighted by ``w``, as scikit-learn's."""
    if w is None:
        return values.mean(axis=1)
    return (values * w).sum(axis=1) / w.sum()


def _mse(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return _average((y - pred) ** 2, w)


def _mae(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return _average(np.abs(y - pred), w)


def _rmse(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return np.sqrt(_mse(y, pred, w))


def _r2(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    weight = 1.0 if w is None else w
    numerator = (weight * (y - pred) ** 2).sum(axis=1)
    denominator = float((weight * (y - np.average(y, weights=w)) ** 2).sum())
    if denominator == 0.0:
        return np.where(numerator == 0.0, 1.0, 0.0)
    return 1.0 - numerator / denominator


def _log_loss(onehot: np.ndarray, proba: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    eps = np.finfo(proba.dtype).eps
    proba = np.clip(proba, eps, 1 - eps)
    picked = np.where(onehot[np.newaxis] == 1.0, np.log(proba), 0.0)
    return _average(-picked.sum(axis=2), w)


def _log_loss_float32(onehot: np.ndarray, proba: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Log loss of float32 probabilities, copy by copy in float32 as scikit-learn's.

    scikit-learn keeps float32 probabilities in float32 (clip to its float32 ``eps``,
    ``x * log(y)`` with zeros where ``x == 0``, row sums, mean), so a float64 formula would
    differ in the eighth digit; each copy repeats those operations on arrays of the same
    shape, without the metric's input validation (with float64 weights the average is in
    float64, as the metric's).
    """
    eps = np.finfo(np.float32).eps
    labels = onehot.astype(np.float32)
    zero = np.float32(0.0)
    out = np.empty(proba.shape[0], dtype=np.float64)
    for c in range(proba.shape[0]):
        p = np.clip(proba[c], eps, 1 - eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            temp = labels * np.log(p)
        loss = -np.sum(np.where(labels == 0.0, zero, temp), axis=1)
        if w is None:
            out[c] = float(np.mean(loss))
        else:  # float64 weights: the average is taken in float64
            out[c] = float(np.sum(loss.astype(np.float64) * w) / np.sum(w))
    return out


#: Metrics with a float32 twin (the scorer sees the model's float32 outputs unconverted).
_FLOAT32 = {_log_loss: _log_loss_float32}


def _brier(onehot: np.ndarray, proba: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    score = _average(((onehot[np.newaxis] - proba) ** 2).sum(axis=2), w)
    return score * 0.5 if proba.shape[2] < 3 else score  # its ``scale_by_half="auto"``


def _curve(t: np.ndarray, score: np.ndarray, w: np.ndarray | None) -> tuple:
    """scikit-learn's binary curve: true and false positives at each distinct threshold."""
    order = np.argsort(score, kind="mergesort")[::-1]
    score, t_sorted = score[order], t[order]
    weight = 1.0 if w is None else w[order]
    distinct = np.where(np.diff(score))[0]
    idx = np.r_[distinct, t_sorted.size - 1]
    tps = np.cumsum(t_sorted * weight, dtype=np.float64)[idx]
    if w is None:
        fps = 1 + idx - tps
    else:
        fps = np.cumsum((1 - t_sorted) * weight, dtype=np.float64)[idx]
    return fps, tps


def _roc_auc_one(t: np.ndarray, score: np.ndarray, w: np.ndarray | None) -> float:
    fps, tps = _curve(t, score, w)
    if len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    return float(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def _ap_one(t: np.ndarray, score: np.ndarray, w: np.ndarray | None) -> float:
    fps, tps = _curve(t, score, w)
    ps = tps + fps
    precision = np.zeros_like(tps)
    np.divide(tps, ps, out=precision, where=(ps != 0))
    recall = tps / tps[-1]
    precision = np.hstack((precision[::-1], 1))
    recall = np.hstack((recall[::-1], 0))
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def _roc_auc(t: np.ndarray, scores: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    if w is not None or scores.ndim != 2:
        return np.array([_roc_auc_one(t, s, w) for s in scores])
    return _roc_auc_ranks(t, scores)


def _roc_auc_ranks(t: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Unweighted ROC AUC of many copies at once, as the Mann–Whitney statistic.

    With tied scores given their mean rank, ``(Σ ranks of positives - P (P + 1) / 2) /
    (P N)`` is the area under scikit-learn's trapezoidal curve; the rank sums are exact
    (halves of integers), so the value is within an ulp or two of the trapezoid's sum. NaN
    where a class is missing, as the curve would give.
    """
    n_copies, m = scores.shape
    order = np.argsort(scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    positions = np.broadcast_to(np.arange(m), (n_copies, m))
    starts = np.ones((n_copies, m), dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    ends = np.ones((n_copies, m), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, positions, m - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = (first + last) / 2.0 + 1.0
    positive = t[order]  # (copies, rows): 1.0 for the positive class
    n_pos = t.sum()
    n_neg = m - n_pos
    u = (ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return u / (n_pos * n_neg)


def _roc_auc_ovr(onehot: np.ndarray, proba: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """One-vs-rest macro ROC AUC: the plain mean of each class's binary AUC."""
    out = []
    for p in proba:
        if not np.allclose(1, p.sum(axis=1)):  # the metric refuses such scores
            raise ValueError(
                "Target scores need to be probabilities for multiclass "
                "roc_auc, i.e. they should sum up to 1.0 over classes"
            )
        out.append(np.mean([_roc_auc_one(onehot[:, c], p[:, c], w) for c in range(p.shape[1])]))
    return np.array(out)


def _ap(t: np.ndarray, scores: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return np.array([_ap_one(t, s, w) for s in scores])


def _take(outputs: np.ndarray, how: str) -> np.ndarray:
    """The part of the stacked outputs the metric reads, as the scorer passes it."""
    if how == "last":
        return outputs[..., -1]
    if how == "pair":  # a binary log loss is given the positive column and completes it
        p = outputs[..., -1]
        return np.stack([1 - p, p], axis=-1)
    return outputs


class BatchedScorer:
    """A recognised scorer's value for many copies at once, from their stacked outputs.

    Attributes
    ----------
    method : str
        The response method whose outputs :meth:`scores` reads.
    row_shares : bool
        Set by :func:`.scoring.share_rows`: scores also carry each row's share.
    reads_order : bool
        The metric depends on the outputs only through their order (ROC AUC, average
        precision); otherwise only through their values.
    """

    def __init__(
        self,
        method: str,
        take: str,
        metric: Callable,
        target: np.ndarray,
        sample_weight: np.ndarray | None,
        sign: float,
    ) -> None:
        self.method = method
        self.take = take
        self.metric = metric
        self.target = target
        self.w = sample_weight
        self.sign = sign
        self.unchecked = CHECKED_COPIES
        self.failed = False
        self.row_shares = False
        self.reads_order = metric in (_roc_auc, _roc_auc_ovr, _ap)
        self.upcast_float32 = False

    def __call__(self, outputs: np.ndarray) -> np.ndarray:
        """Signed scores of the stacked ``outputs`` (copies along the first axis)."""
        metric = self.metric
        if outputs.dtype == np.float32 and metric in _FLOAT32:
            metric = _FLOAT32[metric]
        elif outputs.dtype == np.float32:  # the metric casts them to the target's float64
            outputs = outputs.astype(np.float64)
        return self.sign * metric(self.target, _take(outputs, self.take), self.w)

    def takes(self, dtype: np.dtype) -> bool:
        """Whether outputs of ``dtype`` are computed here (else the scorer replays them).

        float32 outputs: log loss repeats scikit-learn's float32 arithmetic; the regression
        metrics cast predictions to the common float dtype of target and predictions,
        float64 when the target is float64 (``upcast_float32``; an integer target leaves
        them float32).
        """
        if dtype == np.float64:
            return True
        return dtype == np.float32 and (self.metric in _FLOAT32 or self.upcast_float32)

    def agrees(self, outputs: np.ndarray, value: Any) -> bool:
        """Whether the batched value of one copy's ``outputs`` is ``value`` (tolerance)."""
        try:
            outputs = np.asarray(outputs)
            if not self.takes(outputs.dtype):  # scikit-learn keeps float32 in float32
                return False
            mine = float(self(outputs[np.newaxis])[0])
            theirs = float(value)
        except (TypeError, ValueError, IndexError, FloatingPointError):
            return False
        if np.isnan(mine) or np.isnan(theirs):
            return bool(np.isnan(mine) and np.isnan(theirs))
        return abs(mine - theirs) <= TOLERANCE

    def scores(self, outputs: list[Mapping[str, Any]], ctx: Any) -> list:
        """The scores of the copies whose outputs are ``outputs`` (batched when checked).

        ``ctx`` is the planned :class:`~.runner.Context`: the first copies, and every copy
        once one disagrees, are scored by the scorer itself (:func:`.scoring.score_outputs`).
        """
        from leap.builtins.methods.permutation.scoring import RowScore, score_outputs

        def replay(out: Mapping[str, Any]) -> Any:
            return score_outputs(
                ctx.scorer, ctx.plan, ctx.estimator, ctx.X, ctx.y, ctx.sample_weight, out
            )

        head = []
        while self.unchecked > 0 and not self.failed and outputs:
            first, outputs = outputs[0], outputs[1:]
            value = replay(first)
            self.unchecked -= 1
            if not self.agrees(first[self.method], value):
                self.failed = True
            head.append(value)
        if self.failed:
            return head + [replay(out) for out in outputs]
        if not outputs:
            return head
        stacked = np.stack([np.asarray(out[self.method]) for out in outputs])
        if not self.takes(stacked.dtype):  # as checked: other dtypes are left to the scorer
            return head + [replay(out) for out in outputs]
        values = [float(v) for v in self(stacked)]
        shares_of = ctx.plan.row_shares if self.row_shares else None
        if shares_of is None:
            return head + values
        many = getattr(shares_of, "stacked", None)
        if many is not None and stacked.ndim == 2 and np.ndim(ctx.y) == 1:
            table = many(ctx.y, stacked, ctx.sample_weight)  # one row per copy
            return head + [RowScore(v, row) for v, row in zip(values, table, strict=True)]
        return head + [
            RowScore(v, shares_of(ctx.y, out, ctx.sample_weight))
            for v, out in zip(values, outputs, strict=True)
        ]


def _labels(estimator: Any, y: np.ndarray) -> np.ndarray | None:
    """The estimator's classes when ``y`` holds exactly them (sorted, at least two)."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return None
    classes = np.asarray(classes)
    if classes.ndim != 1 or classes.size < 2 or y.ndim != 1:
        return None
    present = np.unique(y)
    if present.shape != classes.shape or not np.array_equal(present, classes):
        return None
    return classes


def build_batched(
    scorer: Any, plan: Any, estimator: Any, y: Any, sample_weight: Any
) -> BatchedScorer | None:
    """A :class:`BatchedScorer` for ``scorer``, or ``None`` when it is not one handled here.

    The caller checks the result against the scorer on the undisturbed outputs before use.
    """
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        mean_absolute_error,
        mean_squared_error,
        r2_score,
        roc_auc_score,
        root_mean_squared_error,
    )

    if plan.score_metric is not None:
        if plan.score_metric is not r2_score:
            return None
        func: Any = r2_score
        sign, kwargs = 1.0, None
    else:
        func = getattr(scorer, "_score_func", None)
        sign = float(getattr(scorer, "_sign", 0))
        kwargs = getattr(scorer, "_kwargs", {"unknown": True})
    ovr = func is roc_auc_score and kwargs == {"multi_class": "ovr"}
    if (kwargs and not ovr) or len(plan.methods) != 1 or sign not in (1.0, -1.0):
        return None
    method = plan.methods[0]
    try:
        y_arr = np.asarray(y)
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != y_arr.shape or not np.all(np.isfinite(w)):
                return None
        if y_arr.ndim != 1 or y_arr.shape[0] == 0:
            return None
    except (TypeError, ValueError):
        return None

    def build(take: str, metric: Callable, target: np.ndarray) -> BatchedScorer:
        return BatchedScorer(method, take, metric, target, w, sign)

    regression = {
        r2_score: _r2,
        mean_squared_error: _mse,
        mean_absolute_error: _mae,
        root_mean_squared_error: _rmse,
    }
    if func in regression:
        if method != "predict" or y_arr.dtype.kind not in "biuf":
            return None
        scorer = build("all", regression[func], y_arr.astype(np.float64))
        scorer.upcast_float32 = y_arr.dtype == np.float64
        return scorer
    classes = _labels(estimator, y_arr)
    if classes is None:
        return None
    if func is log_loss and method == "predict_proba":
        onehot = (y_arr[:, np.newaxis] == classes[np.newaxis, :]).astype(np.float64)
        return build("pair" if classes.size == 2 else "all", _log_loss, onehot)
    if func is brier_score_loss and method == "predict_proba":
        if classes.size == 2 and classes.dtype.kind in "OUS":
            return None  # its default pos_label cannot be inferred from string labels
        onehot = (y_arr[:, np.newaxis] == classes[np.newaxis, :]).astype(np.float64)
        return build("pair" if classes.size == 2 else "all", _brier, onehot)
    if ovr:
        if method != "predict_proba" or classes.size < 3:
            return None
        onehot = (y_arr[:, np.newaxis] == classes[np.newaxis, :]).astype(np.float64)
        return build("all", _roc_auc_ovr, onehot)
    if classes.size != 2:
        return None
    positive = (y_arr == classes[-1]).astype(np.float64)
    if func is roc_auc_score and method in ("predict_proba", "decision_function"):
        return build("last" if method == "predict_proba" else "all", _roc_auc, positive)
    if func is average_precision_score and method in ("predict_proba", "decision_function"):
        if not (classes[-1] == 1 and classes[0] != 1):  # its default pos_label is 1
            return None
        return build("last" if method == "predict_proba" else "all", _ap, positive)
    return None
