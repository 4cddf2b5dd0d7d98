"""Fast path for decision trees and random/extra-trees forests.

A sample's leaf in a tree can only change if its path tests a permuted column. The trees'
nodes are renumbered in pre-order, so the nodes under a node are one range of numbers, and
per tree the samples are sorted by the leaf they reach, so "samples whose path passes node
``n``" is one slice. For a group of columns LEAP collects the slices of the nodes that test
one of them; per copy it walks only those (sample, tree) pairs whose values changed, and
re-adds the affected samples' tree outputs. Columns no tree splits on cannot change any
output.

Exactness: a tree compares the float32 value with the float64 threshold, as scikit-learn's
``apply`` does, so leaves are identical; LEAP keeps the largest float32 not above each
threshold, which a float32 value is at most exactly when it is at most the threshold, and
casts the values to float32 as it reads them. A forest's prediction is the sum of its
trees' leaf values added in tree order starting from zero, divided by the number of trees
(what scikit-learn computes with ``n_jobs=1``; with more jobs it adds them in whatever order
threads finish). Leaf values are kept once per distinct value (bit for bit). The unpermuted
outputs are rebuilt this way and compared bitwise with the model's before the path is used.
A missing value (NaN) goes to the side the node's ``missing_go_to_left`` says, as in
scikit-learn's ``apply``; on data with missing values LEAP's leaves are also compared with
the model's own ``apply`` on every row.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

from leap.builtins.methods.permutation._jit import compiled
from leap.builtins.methods.permutation.fastpaths import quietly

_FORESTS = (
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
)
_TREES = (DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor)
_LEAF = -1


def _preorder(left, right, order, size, stack):
    """Loop kernel: one tree's nodes in depth-first pre-order (left subtree first) into
    ``order``, and every node's subtree size (by the tree's own numbering) into ``size``.

    ``stack`` is scratch space as long as the tree. Returns the number of nodes reached.
    """
    top = 0
    stack[0] = 0
    count = 0
    while top >= 0:
        node = stack[top]
        top -= 1
        order[count] = node
        count += 1
        if left[node] != -1:
            stack[top + 1] = right[node]
            stack[top + 2] = left[node]
            top += 2
    for k in range(count - 1, -1, -1):
        node = order[k]
        if left[node] == -1:
            size[node] = 1
        else:
            size[node] = 1 + size[left[node]] + size[right[node]]
    return count


def _preorder_numpy(left, right, order, size, stack):
    split = left != _LEAF
    levels = []
    level = np.zeros(1, dtype=np.int64)
    while level.size:  # breadth-first levels; children always come after parents
        levels.append(level)
        inner = level[split[level]]
        level = np.concatenate([left[inner], right[inner]])
    size[:] = 1
    for level in reversed(levels):
        inner = level[split[level]]
        size[inner] = 1 + size[left[inner]] + size[right[inner]]
    position = np.zeros(left.shape[0], dtype=np.int64)
    for level in levels:
        inner = level[split[level]]
        position[left[inner]] = position[inner] + 1
        position[right[inner]] = position[inner] + 1 + size[left[inner]]
    reached = sum(level.size for level in levels)
    order[position] = np.arange(left.shape[0])
    return reached


def _walk(right, feature, threshold, nan_left, roots, X, reached):
    """Loop kernel: the leaf node every row reaches in every tree, into ``reached[t, i]``.

    Nodes are numbered in pre-order: a split node's left child is the next node, ``right``
    its right child; a leaf whose value is ``values[v]`` has ``right == -1 - v``.
    """
    n_trees, m = reached.shape
    for t in range(n_trees):
        root = roots[t]
        for i in range(m):
            node = root
            nxt = right[node]
            while nxt >= 0:
                x = np.float32(X[i, feature[node]])
                if x != x:
                    if nan_left[node]:
                        node = node + 1
                    else:
                        node = nxt
                elif x <= threshold[node]:
                    node = node + 1
                else:
                    node = nxt
                nxt = right[node]
            reached[t, i] = node


def _descend_numpy(right, feature, threshold, nan_left, node, values_at):
    """Vectorised walk from the nodes ``node`` (modified): the leaves reached.

    ``values_at(active, f)`` gives the float32 values of the walks ``active`` in columns ``f``.
    """
    nxt = right[node]
    active = np.flatnonzero(nxt >= 0)
    while active.size:
        n = node[active]
        x = values_at(active, feature[n])
        go_left = x <= threshold[n]
        if nan_left.size:  # empty: no value is missing
            go_left = np.where(np.isnan(x), nan_left[n], go_left)
        node[active] = np.where(go_left, n + 1, nxt[active])
        nxt[active] = right[node[active]]
        active = active[nxt[active] >= 0]
    return node


def _walk_numpy(right, feature, threshold, nan_left, roots, X, reached):
    n_trees, m = reached.shape

    def values_at(active, f):
        return X[active, f].astype(np.float32)

    for t in range(n_trees):
        node = np.full(m, roots[t], dtype=np.int64)
        reached[t] = _descend_numpy(right, feature, threshold, nan_left, node, values_at)


def _update(
    right, feature, threshold, nan_left, roots, X, slot, new, changed, starts, stops,
    flat_rows, leaves, values, base_out, single, out, work, touched, touched_rows, acc,
):  # fmt: skip
    """Loop kernel: outputs of every copy, re-adding the trees of rows whose leaf moved.

    ``slot[f]`` is the position of feature ``f`` in the permuted group (``-1``: not in it),
    ``new[r, i, slot[f]]`` its permuted value in copy ``r``. The (row, tree) pairs to walk
    are the rows ``flat_rows[p]`` at the positions ``starts[s] <= p < stops[s]``; tree ``t``
    holds positions ``t*m .. (t+1)*m``. ``leaves[i, t]`` is the value number row ``i``
    reaches in tree ``t`` unpermuted: only rows that reach another value are re-added.

    ``work`` starts as a copy of ``leaves`` and is restored row by row; ``touched`` (n_rows,
    False), ``touched_rows`` (n_rows,) and ``acc`` (n_outputs,) are scratch space (allocated
    by the caller, so that memory tracing sees them).
    """
    R, m = changed.shape
    n_trees = leaves.shape[1]
    C = values.shape[1]
    for r in range(R):
        for i in range(m):
            for c in range(C):
                out[r, i, c] = base_out[i, c]
        n_touched = 0
        for s in range(starts.shape[0]):
            t = starts[s] // m
            root = roots[t]
            for p in range(starts[s], stops[s]):
                i = flat_rows[p]
                if not changed[r, i]:
                    continue
                node = root
                nxt = right[node]
                while nxt >= 0:
                    f = feature[node]
                    q = slot[f]
                    x = np.float32(X[i, f]) if q < 0 else new[r, i, q]
                    if x != x:
                        if nan_left[node]:
                            node = node + 1
                        else:
                            node = nxt
                    elif x <= threshold[node]:
                        node = node + 1
                    else:
                        node = nxt
                    nxt = right[node]
                leaf = -1 - nxt
                if leaf != leaves[i, t]:
                    work[i, t] = leaf
                    if not touched[i]:
                        touched[i] = True
                        touched_rows[n_touched] = i
                        n_touched += 1
        for k in range(n_touched):
            i = touched_rows[k]
            touched[i] = False
            if single:
                for c in range(C):
                    out[r, i, c] = values[work[i, 0], c]
            else:
                for c in range(C):
                    acc[c] = 0.0
                for t in range(n_trees):
                    leaf = work[i, t]
                    for c in range(C):
                        acc[c] += values[leaf, c]
                for c in range(C):
                    out[r, i, c] = acc[c] / n_trees
            for t in range(n_trees):
                work[i, t] = leaves[i, t]


def _update_numpy(
    right, feature, threshold, nan_left, roots, X, slot, new, changed, starts, stops,
    flat_rows, leaves, values, base_out, single, out, work, touched, touched_rows, acc,
):  # fmt: skip
    R, m = changed.shape
    out[:] = base_out[None]
    spans = [np.arange(a, b) for a, b in zip(starts, stops, strict=True)]
    flat = np.concatenate([np.arange(0), *spans])
    all_rows, all_trees = flat_rows[flat].astype(np.int64), flat // m
    for r in range(R):
        keep = changed[r, all_rows]
        rows, trees = all_rows[keep], all_trees[keep]
        if rows.size == 0:
            continue
        node = _descend_numpy(
            right, feature, threshold, nan_left, roots[trees], _permuted(X, slot, new[r], rows)
        )
        leaf = -1 - right[node]
        moved = leaf != leaves[rows, trees]
        if not moved.any():
            continue
        rows, trees, leaf = rows[moved], trees[moved], leaf[moved]
        affected, where = np.unique(rows, return_inverse=True)
        row_leaves = leaves[affected]
        row_leaves[where, trees] = leaf
        out[r, affected] = _combine(values, row_leaves, leaves.shape[1], single)


def _permuted(X, slot, new, rows):
    """``values_at`` for :func:`_descend_numpy` on one copy: row ``rows[a]``'s values."""

    def values_at(active, f):
        at = rows[active]
        x = X[at, f].astype(np.float32)
        q = slot[f]
        hit = q >= 0
        if hit.any():
            x[hit] = new[at[hit], q[hit]]
        return x

    return values_at


def _combine(values: np.ndarray, leaves: np.ndarray, n_trees: int, single: bool) -> np.ndarray:
    """Forest output of rows with the given leaves: tree values added in order from 0, / T."""
    per_tree = values[leaves]  # (rows, trees, C)
    if single:
        return per_tree[:, 0]
    total = np.zeros(per_tree.shape[0:1] + per_tree.shape[2:])
    for t in range(n_trees):
        total += per_tree[:, t]
    return total / n_trees


def smallest_index_type(n: int) -> type:
    """The smallest of uint16, int32 and int64 that holds every integer in ``[0, n)``."""
    if n <= 2**16:
        return np.uint16
    return np.int32 if n <= 2**31 else np.int64


class PathIndex:
    """Which (row, tree) pairs' paths test a given column, for a set of trees.

    Parameters
    ----------
    left, right : ndarray of int32 or int64, shape (n_nodes,)
        Children of every node of all trees, numbered globally (``-1``: leaf).
    feature : ndarray of int32 or int64, shape (n_nodes,)
        Column each split node tests (any value at leaves).
    roots : ndarray of int64, shape (n_trees,)
        Global number of each tree's root.
    leaves : ndarray of int, shape (n_rows, n_trees)
        Global number of the leaf each row reaches in each tree, unpermuted.
    n_features : int
        Number of columns.

    Every node gets its depth-first interval ``[tin, tout)`` within its tree, and per tree
    the rows are sorted by the interval position of their leaf, so "rows whose path passes
    node ``n``" is one slice of one sorted array.
    """

    def __init__(self, left, right, feature, roots, leaves, n_features: int) -> None:
        self.left, self.right, self.roots = left, right, roots
        self.split = left != _LEAF
        n_nodes = left.shape[0]
        m, n_trees = leaves.shape
        self.n_rows = m
        self._intervals(n_nodes)
        self.span = int(self.tout.max()) + 1
        self.flat_rows = np.empty(n_trees * m, dtype=smallest_index_type(m))
        self.pair_type = np.int32 if n_trees * m < 2**31 else np.int64  # pairs() returns
        # Keys below n_trees × span, in the smallest type that holds them (searches are made
        # with keys of the same type, so no converted copy is made per search).
        key_type = smallest_index_type(n_trees * self.span + 1)
        self.flat_keys = np.empty(n_trees * m, dtype=key_type)
        for t in range(n_trees):
            position = self.tin[leaves[:, t]]
            order = np.argsort(position, kind="stable")
            self.flat_rows[t * m : (t + 1) * m] = order
            keys = self.flat_keys[t * m : (t + 1) * m]
            keys[:] = position[order]
            keys += t * self.span  # fits: key_type holds every key
        split_nodes = np.flatnonzero(self.split)
        by_feature = np.argsort(feature[split_nodes], kind="stable")
        self.nodes_by_feature = split_nodes[by_feature].astype(left.dtype)
        self.feature_start = np.searchsorted(
            feature[self.nodes_by_feature], np.arange(n_features + 1)
        )

    def _intervals(self, n_nodes: int) -> None:
        """Depth-first interval ``[tin, tout)`` of every node within its tree."""
        levels = []
        level = self.roots
        while level.size:  # breadth-first levels; children always come after parents
            levels.append(level)
            inner = level[self.split[level]]
            level = np.concatenate([self.left[inner], self.right[inner]])
        size = np.ones(n_nodes, dtype=np.int32)  # a tree's nodes: far below 2**31
        for level in reversed(levels):
            inner = level[self.split[level]]
            size[inner] = 1 + size[self.left[inner]] + size[self.right[inner]]
        tin = np.zeros(n_nodes, dtype=np.int32)
        for level in levels:
            inner = level[self.split[level]]
            tin[self.left[inner]] = tin[inner] + 1
            tin[self.right[inner]] = tin[inner] + 1 + size[self.left[inner]]
        self.tin = tin
        size += tin
        self.tout = size

    def pairs(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, tree) pairs whose path tests one of ``cols``, ordered by tree."""
        starts, stops = self.feature_start[cols], self.feature_start[cols + 1]
        nodes = np.concatenate(
            [self.nodes_by_feature[a:b] for a, b in zip(starts, stops, strict=True)]
        )
        if nodes.size == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        # The rows under node n of tree t: one slice of tree t's rows sorted by leaf position.
        tree = np.searchsorted(self.roots, nodes, "right") - 1  # the tree each node is in
        base = tree.astype(np.int64) * self.span
        key_type = self.flat_keys.dtype
        lo = np.searchsorted(self.flat_keys, (base + self.tin[nodes]).astype(key_type), "left")
        hi = np.searchsorted(self.flat_keys, (base + self.tout[nodes]).astype(key_type), "left")
        # Nested nodes give the same pairs: the slices are nested or disjoint, so keeping
        # those not inside an earlier one (by start, longest first) leaves disjoint slices
        # in order, and their positions are sorted and unique.
        by_start = np.lexsort((-hi, lo))
        lo, hi = lo[by_start], hi[by_start]
        outer = np.ones(lo.size, dtype=bool)
        outer[1:] = hi[1:] > np.maximum.accumulate(hi)[:-1]
        lo, hi = lo[outer], hi[outer]
        lengths = hi - lo
        total = int(lengths.sum())
        flat = np.arange(total, dtype=self.pair_type)
        flat += np.repeat(lo - (np.cumsum(lengths) - lengths), lengths).astype(self.pair_type)
        rows = self.flat_rows[flat].astype(self.pair_type)
        flat //= self.n_rows
        return rows, flat

    def unaffected(self, cols: np.ndarray) -> bool:
        """No tree splits on any of ``cols``."""
        return all(self.feature_start[c] == self.feature_start[c + 1] for c in cols)


class TreePath:
    """Outputs of a tree or forest on permuted copies (see module docstring).

    The trees' nodes are renumbered in pre-order, all trees one after another: a split
    node's left child is the next node, so only its right child is stored (``right``), and
    the nodes under split node ``n`` are ``n`` to ``n + size`` (``split_lo`` to ``split_hi``,
    kept for the split nodes of every column, ``feature_start``). A leaf stores ``-1 - v``,
    its value being row ``v`` of ``values``, the distinct rows of the leaf values (exactly,
    bit for bit). Per tree the rows sorted by the leaf they reach (``flat_rows``,
    ``flat_nodes``) make "rows whose path passes a node" one slice. Thresholds are kept as
    float32: the largest float32 not above scikit-learn's float64 threshold, which a float32
    value is at most exactly when it is at most the threshold.
    """

    def __init__(self, model: Any, X: np.ndarray, methods: frozenset[str]) -> None:
        self.model = model
        self.classifier = hasattr(model, "classes_")
        self.single = isinstance(model, _TREES)
        trees = [model] if self.single else list(model.estimators_)
        self.n_trees = len(trees)
        self.methods = methods
        X = np.asarray(X)
        if X.dtype != np.float32 and X.dtype != np.float64:
            X = X.astype(np.float32)  # the kernels read float32 or float64 values
        # The rows' values, cast to float32 where read (as scikit-learn casts them): no copy.
        self.X = X
        m, n_features = X.shape
        n_out = model.n_classes_ if self.classifier else 1
        sizes = np.array([est.tree_.node_count for est in trees], dtype=np.int64)
        n_leaves = np.array([est.tree_.n_leaves for est in trees], dtype=np.int64)
        n_nodes, n_leaf = int(sizes.sum()), int(n_leaves.sum())
        self.roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        first_leaf = np.concatenate([[0], np.cumsum(n_leaves)[:-1]])
        self.values, value_of_leaf = _distinct_values(trees, n_leaf, n_out)
        node_type = np.int32 if n_nodes < 2**31 else np.int64  # node numbers and range ends
        self.right = np.empty(n_nodes, dtype=node_type)
        self.feature: np.ndarray = np.empty(n_nodes, dtype=smallest_index_type(n_features))
        self.threshold = np.empty(n_nodes, dtype=np.float32)
        # Where missing values go; empty when X has none (no value read is then NaN).
        self.nan_left = np.zeros(n_nodes if np.isnan(X).any() else 0, dtype=np.bool_)
        counts = np.zeros(n_features, dtype=np.int64)
        for est in trees:
            tree = est.tree_
            counts += np.bincount(tree.feature[tree.children_left != _LEAF], minlength=n_features)
        self.feature_start = np.concatenate([[0], np.cumsum(counts)])
        fill = self.feature_start[:-1].copy()
        self.split_lo: np.ndarray = np.empty(n_nodes - n_leaf, dtype=node_type)
        self.split_hi: np.ndarray = np.empty(n_nodes - n_leaf, dtype=node_type)
        for t, est in enumerate(trees):
            tree = est.tree_
            order, size = self._preorder(tree)
            start = self.roots[t]
            part = slice(start, start + sizes[t])
            is_leaf = tree.children_left == _LEAF
            number = np.empty(order.size, dtype=np.int64)  # by the tree's own numbering
            number[order] = np.arange(start, start + order.size)
            code = np.zeros(order.size, dtype=np.int64)
            code[is_leaf] = value_of_leaf[first_leaf[t] : first_leaf[t] + n_leaves[t]]
            code = -1 - code
            leaf = is_leaf[order]
            self.right[part] = np.where(leaf, code[order], number[tree.children_right[order]])
            self.feature[part] = np.where(leaf, 0, tree.feature[order])
            self.threshold[part] = _float32_below(tree.threshold[order])
            if self.nan_left.size:
                self.nan_left[part] = np.asarray(tree.missing_go_to_left, dtype=bool)[order]
            # The node ranges of the split nodes, by column (in tree and pre-order).
            inner = np.flatnonzero(~leaf)
            column = tree.feature[order[inner]]
            by = np.argsort(column, kind="stable")
            inner, column = inner[by], column[by]
            at = fill[column] + np.arange(column.size) - np.searchsorted(column, column)
            self.split_lo[at] = inner + start
            self.split_hi[at] = inner + size[inner] + start
            fill += np.bincount(column, minlength=n_features)
        # Leaf of every (row, tree), and the forest's output summed in tree order.
        reached = np.empty((self.n_trees, m), dtype=node_type)
        self._kernel(_walk, _walk_numpy)(
            self.right, self.feature, self.threshold, self.nan_left, self.roots, X, reached
        )
        self.leaves: np.ndarray = np.empty(
            (m, self.n_trees), dtype=smallest_index_type(self.values.shape[0])
        )
        total = np.zeros((m, n_out))
        flat_rows: np.ndarray = np.empty((self.n_trees, m), dtype=smallest_index_type(m))
        for t in range(self.n_trees):
            column = -1 - self.right[reached[t]]
            self.leaves[:, t] = column
            total += self.values[column]
            rows = np.argsort(reached[t], kind="stable")
            flat_rows[t] = rows
            reached[t] = reached[t][rows]
        self.flat_rows = flat_rows.reshape(-1)
        self.flat_nodes = reached.reshape(-1)  # sorted: trees in order, nodes within each
        # A single tree returns its leaf value as is; a forest adds from 0 and divides.
        self.base_out = self.values[self.leaves[:, 0]] if self.single else total / self.n_trees

    @staticmethod
    def _kernel(loop, vectorised):
        return compiled(loop) or vectorised

    def _preorder(self, tree: Any) -> tuple[np.ndarray, np.ndarray]:
        """A tree's nodes in pre-order, and their subtree sizes (in that order)."""
        n = tree.node_count
        order = np.empty(n, dtype=np.int64)
        size = np.empty(n, dtype=np.int64)
        reached = self._kernel(_preorder, _preorder_numpy)(
            tree.children_left, tree.children_right, order, size, np.empty(n, dtype=np.int64)
        )
        if reached != n:
            raise ValueError("a tree has nodes its root does not reach")
        return order, size[order]

    def reached_nodes(self) -> np.ndarray:
        """The node every row reaches in every tree, shape (n_rows, n_trees)."""
        m = self.leaves.shape[0]
        out = np.empty((m, self.n_trees), dtype=np.int64)
        for t in range(self.n_trees):
            block = slice(t * m, (t + 1) * m)
            out[self.flat_rows[block], t] = self.flat_nodes[block]
        return out

    def model_nodes(self, nodes: np.ndarray) -> np.ndarray:
        """The model's own node numbers (``apply``, one column per tree) in LEAP's numbering."""
        trees = [self.model] if self.single else list(self.model.estimators_)
        out = np.empty(nodes.shape, dtype=np.int64)
        for t, est in enumerate(trees):
            order, _ = self._preorder(est.tree_)
            number = np.empty(order.size, dtype=np.int64)
            number[order] = np.arange(order.size) + self.roots[t]
            out[:, t] = number[nodes[:, t]]
        return out

    def _segments(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat positions of the (row, tree) pairs whose path tests one of ``cols``: the
        disjoint slices ``starts[s]:stops[s]``, in order (so tree by tree)."""
        starts, stops = self.feature_start[cols], self.feature_start[cols + 1]
        spans = list(zip(starts, stops, strict=True))
        lo = np.concatenate([self.split_lo[a:b] for a, b in spans])
        hi = np.concatenate([self.split_hi[a:b] for a, b in spans])
        # Node ranges are nested or disjoint: those not inside an earlier one (by start,
        # longest first) are disjoint and in order.
        by_start = np.lexsort((-hi.astype(np.int64), lo))
        lo, hi = lo[by_start], hi[by_start]
        outer = np.ones(lo.size, dtype=bool)
        outer[1:] = hi[1:] > np.maximum.accumulate(hi)[:-1]
        begin = np.searchsorted(self.flat_nodes, lo[outer], "left")
        end = np.searchsorted(self.flat_nodes, hi[outer], "left")
        keep = end > begin
        return begin[keep], end[keep]

    def base_outputs(self) -> dict[str, np.ndarray]:
        """The model's outputs on the unpermuted data, rebuilt from the leaves."""
        return self._format(self.base_out[None])

    def _format(self, out: np.ndarray) -> dict[str, np.ndarray]:
        result = {}
        if self.classifier:
            if "predict_proba" in self.methods:
                result["predict_proba"] = out
            if "predict_log_proba" in self.methods:
                with np.errstate(divide="ignore"):
                    result["predict_log_proba"] = np.log(out)
            if "predict" in self.methods:
                result["predict"] = self.model.classes_.take(np.argmax(out, axis=2), axis=0)
        else:
            result["predict"] = out[:, :, 0]
        return result

    def unaffected(self, cols: np.ndarray) -> bool:
        """No tree splits on any of ``cols``."""
        return all(self.feature_start[c] == self.feature_start[c + 1] for c in cols)

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy (always certified)."""
        cols = np.asarray(cols, dtype=np.int64)
        R, m = orders.shape
        old = self.X[:, cols].astype(np.float32)
        new = old[orders]  # (R, m, len(cols))
        changed = np.any(new.view(np.uint32) != old.view(np.uint32)[None], axis=2)
        starts, stops = self._segments(cols)
        slot = np.full(self.X.shape[1], -1, dtype=np.int64)
        slot[cols] = np.arange(len(cols))
        out = np.empty((R, m, self.values.shape[1]))
        self._kernel(_update, _update_numpy)(
            self.right, self.feature, self.threshold, self.nan_left, self.roots, self.X, slot,
            new, changed, starts, stops, self.flat_rows, self.leaves, self.values,
            self.base_out, self.single, out, self.leaves.copy(),
            np.zeros(m, dtype=np.bool_), np.empty(m, dtype=self.flat_rows.dtype),
            np.empty(self.values.shape[1]),
        )  # fmt: skip
        return self._format(out), np.ones(R, dtype=bool)


def _distinct_values(trees: list, n_leaf: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct leaf values of all trees (bit for bit), and the number of each leaf's.

    Leaves are taken tree by tree, in each tree's own node order. Few values are distinct
    (a classifier's pure leaves share theirs), so the table is small and its numbers too.
    """
    values = np.empty((n_leaf, n_out), dtype=np.float64)
    at = 0
    for est in trees:
        tree = est.tree_
        leaf = tree.children_left == _LEAF
        values[at : at + tree.n_leaves] = tree.value[leaf, 0, :n_out]
        at += tree.n_leaves
    order = np.lexsort(values.view(np.uint64).T[::-1])
    ranked = values[order].view(np.uint64)
    first = np.ones(n_leaf, dtype=bool)
    first[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    del ranked
    number: np.ndarray = np.empty(n_leaf, dtype=smallest_index_type(int(first.sum())))
    number[order] = np.cumsum(first) - 1
    return values[order[first]], number


def _float32_below(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 at most each float64 threshold.

    For a float32 ``x``, ``x <= t`` exactly when ``x <= _float32_below(t)``: every float32 at
    most ``t`` is at most the largest one, which is itself at most ``t``.
    """
    with np.errstate(over="ignore"):  # beyond float32's range: inf, stepped down below
        below = threshold.astype(np.float32)
    up = below > threshold
    below[up] = np.nextafter(below[up], np.float32(-np.inf))
    return below


def tree_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> TreePath | None:
    """Factory: a :class:`TreePath` for single-output trees and random/extra-trees forests."""
    cls = type(estimator)
    if cls not in _FORESTS and cls not in _TREES:
        return None
    methods = frozenset(base_outputs)
    classifier = hasattr(estimator, "classes_")
    allowed = {"predict", "predict_proba", "predict_log_proba"} if classifier else {"predict"}
    if not methods or not methods <= allowed or estimator.n_outputs_ != 1:
        return None
    if X.dtype.kind != "f" or np.any(np.isinf(X.astype(np.float32))):
        return None
    path = TreePath(estimator, X, methods)
    if np.isnan(X).any():
        # Missing values go where each node's ``missing_go_to_left`` says: LEAP's leaves
        # must be the model's own on every row, not just give the same outputs.
        own = np.asarray(quietly(estimator.apply, X)).reshape(X.shape[0], -1)
        if own.shape != path.leaves.shape or not np.array_equal(
            path.model_nodes(own), path.reached_nodes()
        ):
            return None
    reference = estimator
    if not path.single and estimator.n_jobs not in (None, 1):
        # Threads would add the trees in the order they finish; compare with tree order.
        reference = copy.copy(estimator)
        reference.n_jobs = 1
    for name, rebuilt in path.base_outputs().items():
        if not _same_bits(rebuilt[0], np.asarray(quietly(getattr(reference, name), X))):
            return None
    return path


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))
