"""Fast path for boosted trees: the model re-predicts only the rows a permutation can change.

A row's output can only change if, in some tree, its path tests a permuted column and its
value there changed. LEAP finds, per permuted copy, the rows whose leaf actually moves in
at least one tree (re-walking only the (row, tree) pairs whose path tests a permuted
column, with :class:`~.trees.PathIndex`), stacks exactly those rows of every copy of a
chunk of groups into one matrix, and asks the model itself for their outputs. Every other
row keeps the model's own unpermuted output.

Exactness: the outputs of re-predicted rows are the model's own, bit for bit, because a
row's prediction by these models depends on that row alone (each row is walked through
every tree and summed in the model's order: baseline or init estimator, learning rate,
accumulation, link function). The factory checks that on the data before the path is used:
the model's outputs on a subset of rows (and on two rows) must equal the corresponding rows
of its outputs on all rows, bit for bit. A row whose leaves do not move gets exactly the
unpermuted leaves, hence the unpermuted output. LEAP's re-walk only selects rows; it is
checked against the model's own leaves on the unpermuted data (scikit-learn's ``apply``,
the library's leaf prediction) and is not used when they disagree: then every row whose
path tests a permuted column and whose value changed is re-predicted. A split LEAP does not
decide itself (a categorical bitset, a value the library treats as missing) marks the row
for re-prediction.

Where the model's raw prediction is a plain sum of leaf values, LEAP does not even ask the
model for the rows whose leaves move (:class:`SumPath`): it adds the leaf values itself in
the model's own order (GradientBoosting: the init estimator's raw prediction, then
``learning_rate * value`` stage by stage; HistGradientBoosting: zero plus the baseline,
then each iteration's leaf value; XGBoost: the intercept, then float32 leaf values tree by
tree) and hands the sums to the model's own link (its loss object; XGBoost's own transform
with an empty tree range). The factory certifies, bit for bit on the unpermuted rows, that
the sums equal the model's raw predictions and that the link gives its outputs; labels
whose raw predictions tie are left to the model.

Covered here: :class:`~sklearn.ensemble.GradientBoostingClassifier` and
:class:`~sklearn.ensemble.GradientBoostingRegressor` (binary and multiclass, the default
or a dummy init estimator), :class:`~sklearn.ensemble.HistGradientBoostingClassifier` and
:class:`~sklearn.ensemble.HistGradientBoostingRegressor` (numerical thresholds, missing
values sent left or right, categorical bitsets), and scikit-learn's trees and forests on
data with missing values (which :mod:`.trees` does not take). XGBoost and LightGBM use the
same machinery (:mod:`.native_boosters`).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leap.builtins.methods.permutation._jit import compiled
from leap.builtins.methods.permutation.fastpaths import thread_limits
from leap.builtins.methods.permutation.trees import PathIndex, smallest_index_type

_LEAF = -1

#: Cap on the bytes of one stacked matrix of re-predicted rows. HistGradientBoosting walks
#: each row through all trees, so a matrix that stays in the CPU caches predicts fastest
#: (435 columns: 400 rows per call ran 3x faster than 4,000).
MAX_STACK_BYTES = 2 * 2**20

#: The cap for GradientBoosting and XGBoost, which walk all rows tree by tree with a fixed
#: cost per tree and call (300 trees: 1,600 rows per call ran 1.5-1.7x faster per row than
#: 400).
MAX_STACK_BYTES_PER_TREE_MODELS = 8 * 2**20

#: Cap on the bytes of the buffer of re-predicted rows, as a share of the data's own bytes
#: (``X.nbytes // REPREDICT_BUFFER_SHARE``), so that the buffer stays small beside the data.
REPREDICT_BUFFER_SHARE = 2

#: :class:`SumPath` keeps each row's unpermuted partial sum after every this many trees of
#: a class (and after its last), not after every tree: a moved row's sum restarts from the
#: last kept one and re-adds at most this many minus one leaf values, the same additions
#: in the same order (a whole ``(rows, trees)`` array was a quarter of the path's memory).
PARTIAL_SUMS_EVERY = 8

#: Groups whose moved rows :class:`SumPath` hands to the link (a library's response method,
#: about a millisecond a call) in one call.
LINK_GROUPS = 8

#: LightGBM treats ``|x| <= 1e-35f`` as zero (a possible missing value); values up to twice
#: that are left to the model at a split whose missing values are zeros.
_ZERO = 2e-35

#: What a NaN does at a split (``TreeTable.nan_rule``): go to the node's missing side, mark
#: the row for the model, or be read as 0.0 (LightGBM splits without missing values).
NAN_SIDE, NAN_UNDECIDED, NAN_AS_ZERO = 0, 1, 2


@dataclass
class TreeTable:
    """All trees of a model as flat node arrays (nodes numbered globally, tree after tree).

    ``left``/``right`` are ``-1`` at leaves; ``nan_left`` says where a NaN goes; at a
    ``special`` node LEAP does not decide the split (the row is re-predicted). ``strict``:
    a value goes left when ``x < threshold`` (else ``x <= threshold``); ``float32``: values
    are compared as float32; ``nan_rule`` (per node): what a NaN does (see ``NAN_SIDE``);
    ``zero_check`` (per node): a value within ``_ZERO`` of zero marks the row for
    re-prediction.
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    nan_left: np.ndarray
    special: np.ndarray
    roots: np.ndarray
    strict: bool = False
    float32: bool = False
    nan_rule: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))
    zero_check: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.bool_))
    cat_row: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    left_bits: np.ndarray = field(default_factory=lambda: np.zeros((1, 8), dtype=np.uint32))
    known_bits: np.ndarray = field(default_factory=lambda: np.zeros((1, 8), dtype=np.uint32))

    def __post_init__(self) -> None:
        # Categorical splits LEAP decides (HistGradientBoosting): per node the row of its
        # bitsets (-1: not decided), a code in the left bitset goes left, a known code right.
        n = self.left.shape[0]
        if self.cat_row.shape[0] != n:
            self.cat_row = np.full(n, -1, dtype=np.int64)
        if self.nan_rule.shape[0] != n:
            self.nan_rule = np.full(n, NAN_SIDE, dtype=np.int8)
        if self.zero_check.shape[0] != n:
            self.zero_check = np.zeros(n, dtype=np.bool_)

    @classmethod
    def concatenate(
        cls,
        parts: list[dict[str, np.ndarray]],
        *,
        strict: bool = False,
        float32: bool = False,
    ) -> TreeTable:
        """One table from per-tree arrays numbered locally (children ``-1`` at leaves).

        Optional per-node keys: ``nan_rule``, ``zero_check`` (default: NaN to the missing
        side, no zero check).
        """
        sizes = np.array([len(p["left"]) for p in parts], dtype=np.int64)
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

        def joined(key, dtype, shift=False):
            arrays = []
            for p, start in zip(parts, roots, strict=True):
                a = np.asarray(p[key]).astype(dtype)
                if shift:
                    a = np.where(a == _LEAF, _LEAF, a + start)
                arrays.append(a)
            return np.concatenate(arrays) if arrays else np.empty(0, dtype)

        left = joined("left", np.int64, shift=True)
        right = joined("right", np.int64, shift=True)
        leaf = left == _LEAF
        nan_rule = np.full(left.shape[0], NAN_SIDE, dtype=np.int8)
        zero_check = np.zeros(left.shape[0], dtype=np.bool_)
        if parts and "nan_rule" in parts[0]:
            nan_rule = joined("nan_rule", np.int8)
            zero_check = joined("zero_check", np.bool_) & ~leaf
        return cls(
            left=left,
            right=right,
            feature=np.where(leaf, 0, joined("feature", np.int64)),
            threshold=joined("threshold", np.float64),
            nan_left=joined("nan_left", np.bool_),
            special=joined("special", np.bool_) & ~leaf,
            roots=roots,
            strict=strict,
            float32=float32,
            nan_rule=nan_rule,
            zero_check=zero_check,
        )

    def walk_values(self, X: np.ndarray) -> np.ndarray:
        """``X`` as the walk compares it (float32 or float64, C order)."""
        return np.ascontiguousarray(X, dtype=np.float32 if self.float32 else np.float64)


def _affected(
    left, right, feature, threshold, nan_left, special, roots, Xw, slot, new, changed,
    pair_rows, pair_trees, leaves, strict, nan_rule, zero_check, refine, affected,
    cat_row, left_bits, known_bits,
):  # fmt: skip
    """Loop kernel: ``affected[r, i]`` when row ``i``'s leaf may move in copy ``r``.

    Only pairs whose row changed are considered; without ``refine`` every such row is
    affected, with it only rows whose re-walk ends in another leaf (or meets a split
    LEAP does not decide).
    """
    R = changed.shape[0]
    P = pair_rows.shape[0]
    for r in range(R):
        for p in range(P):
            i = pair_rows[p]
            if not changed[r, i] or affected[r, i]:
                continue
            if not refine:
                affected[r, i] = True
                continue
            t = pair_trees[p]
            node = roots[t]
            undecided = False
            while left[node] != -1:
                f = feature[node]
                q = slot[f]
                x = Xw[i, f] if q < 0 else new[r, i, q]
                if special[node] and not (cat_row[node] >= 0 and x != x):
                    b = cat_row[node]
                    if b < 0 or not (0 <= x < 256) or int(x) != x:
                        undecided = True
                        break
                    c = int(x)
                    if (left_bits[b, c >> 5] >> (c & 31)) & 1:
                        node = left[node]
                    elif (known_bits[b, c >> 5] >> (c & 31)) & 1:
                        node = right[node]
                    else:
                        undecided = True
                        break
                    continue
                if x != x:
                    rule = nan_rule[node]
                    if rule == 1:
                        undecided = True
                        break
                    if rule == 0:
                        node = left[node] if nan_left[node] else right[node]
                        continue
                    x = 0.0
                if zero_check[node] and abs(x) <= 2e-35:
                    undecided = True
                    break
                if strict:
                    go_left = x < threshold[node]
                else:
                    go_left = x <= threshold[node]
                node = left[node] if go_left else right[node]
            if undecided or node != leaves[i, t]:
                affected[r, i] = True


def _walk_nodes(table: TreeTable, Xw: np.ndarray, rows: np.ndarray, trees: np.ndarray, values):
    """Vectorised walk of (row, tree) pairs; ``values(active, features)`` gives the inputs.

    Returns ``(leaf, undecided)`` per pair.
    """
    node = table.roots[trees].copy()
    undecided = np.zeros(rows.shape[0], dtype=bool)
    active = np.flatnonzero(table.left[node] != _LEAF)
    while active.size:
        n = node[active]
        x = values(active, table.feature[n]).astype(np.float64)
        nan = np.isnan(x)
        b = table.cat_row[n]
        decided = b >= 0
        with np.errstate(invalid="ignore"):
            code_ok = decided & ~nan & (x >= 0) & (x < 256)
        code_ok &= np.where(code_ok, x, 0) == np.floor(np.where(code_ok, x, 0))
        codes = np.where(code_ok, x, 0).astype(np.int64)
        rows_b = np.where(decided, b, 0)
        bit = np.uint32(1) << (codes & 31).astype(np.uint32)
        in_left = (table.left_bits[rows_b, codes >> 5] & bit) != 0
        in_known = (table.known_bits[rows_b, codes >> 5] & bit) != 0
        categorical = table.special[n]
        stop = categorical & ~(decided & (nan | (code_ok & (in_left | in_known))))
        rule = table.nan_rule[n]
        stop |= nan & (rule == NAN_UNDECIDED)
        x = np.where(nan & (rule == NAN_AS_ZERO), 0.0, x)
        nan &= rule == NAN_SIDE
        stop |= table.zero_check[n] & (np.abs(x) <= _ZERO)
        with np.errstate(invalid="ignore"):
            go_left = x < table.threshold[n] if table.strict else x <= table.threshold[n]
        go_left = np.where(categorical, in_left, go_left)
        go_left = np.where(nan, table.nan_left[n], go_left)
        node[active] = np.where(go_left, table.left[n], table.right[n])
        undecided[active[stop]] = True
        active = active[~stop]
        active = active[table.left[node[active]] != _LEAF]
    return node, undecided


def _affected_numpy(
    left, right, feature, threshold, nan_left, special, roots, Xw, slot, new, changed,
    pair_rows, pair_trees, leaves, strict, nan_rule, zero_check, refine, affected,
    cat_row, left_bits, known_bits,
):  # fmt: skip
    table = TreeTable(
        left, right, feature, threshold, nan_left, special, roots,
        bool(strict), Xw.dtype == np.float32, nan_rule, zero_check,
        cat_row, left_bits, known_bits,
    )  # fmt: skip
    for r in range(changed.shape[0]):
        keep = changed[r, pair_rows]
        rows, trees = pair_rows[keep], pair_trees[keep]
        if rows.size == 0:
            continue
        if not refine:
            affected[r, rows] = True
            continue

        def values(active, f, rows=rows, r=r):
            x = Xw[rows[active], f]
            q = slot[f]
            hit = q >= 0
            if hit.any():
                x[hit] = new[r, rows[active][hit], q[hit]]
            return x

        node, undecided = _walk_nodes(table, Xw, rows, trees, values)
        moved = undecided | (node != leaves[rows, trees])
        affected[r, rows[moved]] = True


def _walk_agrees(
    left, right, feature, threshold, nan_left, special, roots, Xw, leaves, strict, nan_rule,
    zero_check, cat_row, left_bits, known_bits,
):  # fmt: skip
    """Loop kernel of :func:`walk_agrees`: every (row, tree) pair walked as :func:`_affected`
    walks it, with no array per pair."""
    n, T = leaves.shape
    for i in range(n):
        for t in range(T):
            node = roots[t]
            undecided = False
            while left[node] != -1:
                f = feature[node]
                x = Xw[i, f]
                if special[node] and not (cat_row[node] >= 0 and x != x):
                    b = cat_row[node]
                    if b < 0 or not (0 <= x < 256) or int(x) != x:
                        undecided = True
                        break
                    c = int(x)
                    if (left_bits[b, c >> 5] >> (c & 31)) & 1:
                        node = left[node]
                    elif (known_bits[b, c >> 5] >> (c & 31)) & 1:
                        node = right[node]
                    else:
                        undecided = True
                        break
                    continue
                if x != x:
                    rule = nan_rule[node]
                    if rule == 1:
                        undecided = True
                        break
                    if rule == 0:
                        node = left[node] if nan_left[node] else right[node]
                        continue
                    x = 0.0
                if zero_check[node] and abs(x) <= 2e-35:
                    undecided = True
                    break
                if strict:
                    go_left = x < threshold[node]
                else:
                    go_left = x <= threshold[node]
                node = left[node] if go_left else right[node]
            if not undecided and node != leaves[i, t]:
                return False
    return True


def walk_agrees(table: TreeTable, X: np.ndarray, leaves: np.ndarray) -> bool:
    """LEAP's walk reaches the model's own ``leaves`` (global numbers) on the rows ``X``.

    Pairs that meet a split LEAP does not decide are not compared (they are re-predicted
    whenever their row changes).
    """
    Xw = table.walk_values(X)
    kernel = compiled(_walk_agrees)
    if kernel is not None:
        t = table
        agrees = kernel(
            t.left, t.right, t.feature, t.threshold, t.nan_left, t.special, t.roots, Xw,
            np.ascontiguousarray(leaves), t.strict, t.nan_rule, t.zero_check, t.cat_row,
            t.left_bits, t.known_bits,
        )  # fmt: skip
        return bool(agrees)
    m, n_trees = leaves.shape
    # In blocks of rows: the vectorised walk holds a dozen temporaries per (row, tree) pair,
    # which for all pairs at once was the path's peak memory (12 MiB for 450 x 300).
    step = max(1, 16384 // max(1, n_trees))
    for start in range(0, m, step):
        block = np.arange(start, min(m, start + step))
        rows = np.repeat(block, n_trees)
        trees = np.tile(np.arange(n_trees), block.size)
        node, undecided = _walk_nodes(
            table, Xw, rows, trees, lambda active, f, rows=rows: Xw[rows[active], f].copy()
        )
        if not np.all(undecided | (node == leaves[block].reshape(-1))):
            return False
    return True


def own_outputs(model: Any, X: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
    """The model's own outputs on ``X`` (at least two rows are always passed)."""
    pad = X.shape[0] < 2
    if pad:
        X = np.concatenate([X, X[:1], X[:1]])[: max(2, X.shape[0])]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        warnings.filterwarnings("ignore", category=UserWarning)
        out = {name: np.asarray(getattr(model, name)(X)) for name in methods}
    if pad:
        out = {name: value[: X.shape[0] - 1] for name, value in out.items()}
    return out


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def certified_base(
    model: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray] | None:
    """The model's outputs on ``X`` if they are the caller's and rows are independent.

    ``None`` unless the model's outputs on ``X`` equal ``base_outputs`` bit for bit, and
    its outputs on subsets of the rows (every seventh row; the last two rows) equal the
    same rows of its outputs on all of them.
    """
    methods = list(base_outputs)
    m = X.shape[0]
    if m < 2 or not methods:
        return None
    try:
        with thread_limits(1):
            own = own_outputs(model, X, methods)
            if not all(_same_bits(own[k], np.asarray(base_outputs[k])) for k in methods):
                return None
            for rows in (np.arange(0, m, 7), np.arange(m - 2, m)):
                if rows.size < 2:
                    continue
                part = own_outputs(model, X[rows], methods)
                if not all(_same_bits(part[k], own[k][rows]) for k in methods):
                    return None
    except Exception:  # a model that cannot predict these rows is not ours to speed up
        return None
    return own


class RepredictPath:
    """Outputs of permuted copies: the model re-predicts only the rows that may change.

    Parameters
    ----------
    model : estimator
        The model whose response methods give the outputs.
    X : ndarray of shape (n_rows, n_features)
        The (reduced) model's input, unpermuted.
    base : dict
        The model's own outputs on ``X`` (see :func:`certified_base`).
    table : TreeTable
        The model's trees.
    leaves : ndarray of shape (n_rows, n_trees)
        The model's own leaf (global node number) of every row in every tree.
    refine : bool
        Whether LEAP's walk may tell which rows' leaves move (see :func:`walk_agrees`).
    walk_input : ndarray, optional
        The values the trees test, column ``j`` standing for ``X``'s column ``j`` (default
        ``X``; a model that encodes its input element by element passes the encoded
        values).
    serial : bool
        Whether model calls from LEAP's threads must not overlap (libraries whose
        prediction is not documented as thread-safe).
    max_stack_bytes : int
        Cap on the bytes of the rows passed to one model call.
    """

    def __init__(
        self,
        model: Any,
        X: np.ndarray,
        base: dict[str, np.ndarray],
        table: TreeTable,
        leaves: np.ndarray,
        refine: bool,
        walk_input: np.ndarray | None = None,
        serial: bool = False,
        max_stack_bytes: int = MAX_STACK_BYTES,
    ) -> None:
        self.model = model
        self.X = X
        self.base = base
        self.methods = list(base)
        self.table = table
        self.Xw = table.walk_values(X if walk_input is None else walk_input)
        # Global node numbers in the smallest type that holds them (uint16 below 65,536
        # nodes): with the path index, the largest arrays the path keeps per (row, tree).
        self.leaves: np.ndarray = np.ascontiguousarray(
            leaves, dtype=smallest_index_type(table.left.shape[0])
        )
        self.refine = bool(refine)
        self.index = PathIndex(
            table.left, table.right, table.feature, table.roots, self.leaves, X.shape[1]
        )
        row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
        cap = min(max_stack_bytes, X.nbytes // REPREDICT_BUFFER_SHARE)
        self.max_rows = max(2, cap // row_bytes)
        self._lock = threading.Lock() if serial else contextlib.nullcontext()
        self.serial = serial

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock() if self.serial else contextlib.nullcontext()

    def single_threaded(self) -> Any:
        """Context manager: the model's OpenMP and BLAS libraries run with one thread, as
        in a joblib worker (LEAP's own threads already share the cores; a thread team per
        call of a few stacked rows can cost a hundred times the prediction). Outputs do
        not change: rows are computed independently."""
        return thread_limits(1)

    def unaffected(self, cols: np.ndarray) -> bool:
        """No tree splits on any of ``cols``."""
        return self.index.unaffected(cols)

    def affected(self, cols: np.ndarray, orders: np.ndarray) -> np.ndarray:
        """``(n_copies, n_rows)``: rows whose output may change in each copy."""
        cols = np.asarray(cols, dtype=np.int64)
        Xw = self.Xw
        new = np.ascontiguousarray(Xw[orders[:, :, None], cols[None, None, :]])
        old = Xw[:, cols]
        width = {4: np.uint32, 8: np.uint64}[Xw.dtype.itemsize]
        changed = np.any(new.view(width) != old.view(width)[None], axis=2)
        pair_rows, pair_trees = self.index.pairs(cols)
        slot = np.full(Xw.shape[1], -1, dtype=np.int64)
        slot[cols] = np.arange(len(cols))
        affected = np.zeros(changed.shape, dtype=np.bool_)
        t = self.table
        kernel = compiled(_affected) or _affected_numpy
        kernel(
            t.left, t.right, t.feature, t.threshold, t.nan_left, t.special, t.roots, Xw,
            slot, new, changed, pair_rows, pair_trees, self.leaves, t.strict, t.nan_rule,
            t.zero_check, self.refine, affected, t.cat_row, t.left_bits, t.known_bits,
        )  # fmt: skip
        return affected

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy (always certified)."""
        return self.outputs_many([cols], orders)[0]

    def outputs_many(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Outputs of every copy of every group; the model sees stacked affected rows."""
        R = orders.shape[0]
        picks = []
        for cols in groups:
            cols = np.asarray(cols, dtype=np.int64)
            copy_of, row_of = np.nonzero(self.affected(cols, orders))
            picks.append((cols, copy_of, row_of))
        predicted = self._predict_rows(picks, orders)
        answers = []
        for (_, copy_of, row_of), pred in zip(picks, predicted, strict=True):
            outs = {}
            for name in self.methods:
                base = self.base[name]
                out = np.repeat(base[np.newaxis], R, axis=0)
                if row_of.size:
                    out[copy_of, row_of] = pred[name]
                outs[name] = out
            answers.append((outs, np.ones(R, dtype=bool)))
        return answers

    def _predict_rows(self, picks: list, orders: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The model's outputs of the picked rows of every group, in few stacked calls
        (rows written straight into one buffer of at most ``max_rows``)."""
        X = self.X
        parts: list[list[dict[str, np.ndarray]]] = [[] for _ in picks]
        n_rows = sum(int(row_of.size) for _, _, row_of in picks)
        buffer = np.empty((min(self.max_rows, max(1, n_rows)), X.shape[1]), dtype=X.dtype)
        batch: list[tuple[int, int]] = []  # (group, rows) in buffer order
        n_batch = 0

        def flush() -> None:
            nonlocal batch, n_batch
            if not batch:
                return
            out = own_outputs(self.model, buffer[:n_batch], self.methods)
            start = 0
            for g, k in batch:
                parts[g].append({name: value[start : start + k] for name, value in out.items()})
                start += k
            batch, n_batch = [], 0

        # One thread limit (and one hold of the lock) for all calls: the buffer is small,
        # so there may be many calls, and setting the limit costs ~0.6 ms each time.
        with self._lock, thread_limits(1):
            for g, (cols, copy_of, row_of) in enumerate(picks):
                for lo in range(0, row_of.size, buffer.shape[0]):
                    r_part = copy_of[lo : lo + buffer.shape[0]]
                    i_part = row_of[lo : lo + buffer.shape[0]]
                    k = i_part.size
                    if n_batch + k > buffer.shape[0]:
                        flush()
                    rows = buffer[n_batch : n_batch + k]
                    np.take(X, i_part, axis=0, out=rows, mode="clip")  # "raise" would buffer
                    rows[:, cols] = X[orders[r_part, i_part][:, None], cols[None, :]]
                    batch.append((g, k))
                    n_batch += k
            flush()
        return [
            {name: np.concatenate([p[name] for p in group]) for name in self.methods}
            if group
            else {}
            for group in parts
        ]


def sklearn_tree_table(trees: list[Any]) -> TreeTable:
    """The table of scikit-learn ``tree_`` objects (float32 values, ``<=``, NaN side)."""
    parts = []
    for est in trees:
        tree = est.tree_
        parts.append(
            {
                "left": tree.children_left,
                "right": tree.children_right,
                "feature": tree.feature,
                "threshold": tree.threshold,
                "nan_left": tree.missing_go_to_left,
                "special": np.zeros(tree.node_count, dtype=bool),
            }
        )
    return TreeTable.concatenate(parts, float32=True)


def _global_leaves(local: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Leaf numbers per tree (``(n_rows, n_trees)``) made global."""
    return np.asarray(local, dtype=np.int64).reshape(local.shape[0], -1) + roots[np.newaxis]


def build_path(
    model: Any,
    X: np.ndarray,
    base_outputs: Mapping[str, np.ndarray],
    make_table: Callable[[], TreeTable],
    model_leaves: Callable[[TreeTable], np.ndarray],
    walk_input: np.ndarray | None = None,
    serial: bool = False,
    max_stack_bytes: int = MAX_STACK_BYTES,
) -> RepredictPath | None:
    """A :class:`RepredictPath`, or ``None`` when the model's outputs cannot be certified."""
    if X.ndim != 2 or X.shape[0] < 2 or X.dtype.kind != "f":
        return None
    base = certified_base(model, X, base_outputs)
    if base is None:
        return None
    table = make_table()
    leaves = model_leaves(table)
    if leaves.shape != (X.shape[0], table.roots.shape[0]):
        return None
    if not np.all(table.left[leaves] == _LEAF):
        return None
    Xw = X if walk_input is None else walk_input
    refine = walk_agrees(table, Xw, leaves)
    return RepredictPath(model, X, base, table, leaves, refine, walk_input, serial, max_stack_bytes)


def _sklearn_types():
    from sklearn import dummy, ensemble, tree

    boosting = (ensemble.GradientBoostingClassifier, ensemble.GradientBoostingRegressor)
    hist = (ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor)
    forests = (
        ensemble.RandomForestClassifier,
        ensemble.RandomForestRegressor,
        ensemble.ExtraTreesClassifier,
        ensemble.ExtraTreesRegressor,
    )
    trees = (
        tree.DecisionTreeClassifier,
        tree.DecisionTreeRegressor,
        tree.ExtraTreeClassifier,
        tree.ExtraTreeRegressor,
    )
    dummies = (dummy.DummyClassifier, dummy.DummyRegressor)
    return boosting, hist, forests, trees, dummies


def boosting_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> RepredictPath | None:
    """Factory: a :class:`RepredictPath` for scikit-learn's boosting (and trees with NaN)."""
    if not type(estimator).__module__.startswith("sklearn."):
        return None
    boosting, hist, forests, trees, dummies = _sklearn_types()
    cls = type(estimator)
    if cls in boosting:
        init = estimator.init_
        if not (isinstance(init, str) and init == "zero") and type(init) not in dummies:
            return None  # an init estimator that reads X would change every row
        stages = list(estimator.estimators_.ravel())

        def leaves(table):
            local = estimator.apply(X)  # (rows, stages, K) or (rows, stages)
            return _global_leaves(local, table.roots)

        path = build_path(
            estimator, X, base_outputs, lambda: sklearn_tree_table(stages), leaves,
            max_stack_bytes=MAX_STACK_BYTES_PER_TREE_MODELS,
        )  # fmt: skip
        return _gb_sums(estimator, X, path, stages) if path is not None else None
    if cls in hist:
        return _hist_path(estimator, X, base_outputs)
    if cls in forests or cls in trees:
        if getattr(estimator, "n_outputs_", 1) != 1 or np.all(np.isfinite(X)):
            return None  # finite data: the tree path computes these outputs itself
        members = [estimator] if cls in trees else list(estimator.estimators_)

        def leaves(table):
            if cls in trees:
                return _global_leaves(estimator.apply(X)[:, np.newaxis], table.roots)
            return _global_leaves(estimator.apply(X), table.roots)

        return build_path(estimator, X, base_outputs, lambda: sklearn_tree_table(members), leaves)
    return None


def _hist_encoding(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """HistGradientBoosting's own encoding of ``X``, and the input column of each output.

    With categorical features the model ordinal-encodes them (value by value) and moves
    them first; the trees test the encoded columns.
    """
    pre = getattr(estimator, "_preprocessor", None)
    if pre is None:
        return X, np.arange(X.shape[1])
    source = np.full(X.shape[1], -1, dtype=np.int64)
    for name, _, cols in pre.transformers_:
        if name == "remainder":
            continue
        out = pre.output_indices_[name]
        inputs = np.flatnonzero(cols) if np.asarray(cols).dtype == bool else np.asarray(cols)
        if out.stop - out.start != inputs.size:
            return None
        source[out] = inputs
    if np.any(source < 0) or np.unique(source).size != X.shape[1]:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        encoded = np.asarray(pre.transform(X), dtype=np.float64)
    if encoded.shape != X.shape:
        return None
    return encoded, source


def _in_column_order(encoded: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``encoded`` with its column ``e`` moved to column ``source[e]``, in place."""
    out = np.ascontiguousarray(encoded)
    if np.array_equal(source, np.arange(source.shape[0])):
        return out
    inverse = np.argsort(source)
    step = max(1, 2**16 // max(1, out.shape[1]))
    for start in range(0, out.shape[0], step):
        block = out[start : start + step]
        block[:] = block[:, inverse]
    return out


def _hist_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> RepredictPath | None:
    """HistGradientBoosting: trees from its predictors, leaves from their own traversal.

    The predictors and the category bitsets are private to scikit-learn; they are read
    here only, and any surprise in their shape makes the factory decline.
    """
    try:
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        encoding = _hist_encoding(estimator, X)
        if encoding is None:
            return None
        encoded, source = encoding
        predictors = [p for iteration in estimator._predictors for p in iteration]
        known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    except Exception:
        return None

    def make_table():
        parts = []
        for p in predictors:
            nodes = p.nodes
            leaf = nodes["is_leaf"].astype(bool)
            parts.append(
                {
                    "left": np.where(leaf, _LEAF, nodes["left"].astype(np.int64)),
                    "right": np.where(leaf, _LEAF, nodes["right"].astype(np.int64)),
                    "feature": source[nodes["feature_idx"]],
                    "threshold": nodes["num_threshold"],
                    "nan_left": nodes["missing_go_to_left"],
                    "special": nodes["is_categorical"],
                }
            )
        table = TreeTable.concatenate(parts)
        # Categorical splits: the node's left bitset, and the known categories of its column.
        left_bits, known_bits = [np.zeros((1, 8), np.uint32)], [np.zeros((1, 8), np.uint32)]
        n_bits = 1
        for p, start in zip(predictors, table.roots, strict=True):
            nodes = p.nodes
            cat = np.flatnonzero(nodes["is_categorical"].astype(bool) & ~nodes["is_leaf"])
            if cat.size == 0:
                continue
            left_bits.append(np.asarray(p.raw_left_cat_bitsets)[nodes["bitset_idx"][cat]])
            known_bits.append(np.asarray(known)[np.asarray(f_idx_map)[nodes["feature_idx"][cat]]])
            table.cat_row[start + cat] = n_bits + np.arange(cat.size)
            n_bits += cat.size
        table.left_bits = np.ascontiguousarray(np.concatenate(left_bits), dtype=np.uint32)
        table.known_bits = np.ascontiguousarray(np.concatenate(known_bits), dtype=np.uint32)
        return table

    try:
        # The trees test the encoded column e as X's column source[e]: the encoded values
        # are put in X's column order in place (row blocks), not into a second array.
        if encoded is X:
            walk_input = None  # no preprocessor: the trees test X's own columns
        else:
            if np.shares_memory(encoded, X):
                encoded = encoded.copy()  # never reorder the caller's data
            walk_input = _in_column_order(encoded, source)
        # The model's own traversal then reads the same array: node and category map
        # numbered by X's columns.
        walk_map = np.empty_like(np.asarray(f_idx_map))
        walk_map[source] = f_idx_map
    except Exception:
        return None

    def leaves(table):
        Xf = np.ascontiguousarray(X if walk_input is None else walk_input)
        local = np.empty((X.shape[0], len(predictors)), dtype=np.int64)
        for t, p in enumerate(predictors):
            nodes = p.nodes.copy()
            nodes["value"] = np.arange(nodes.shape[0], dtype=np.float64)
            nodes["feature_idx"] = source[nodes["feature_idx"]]
            walker = TreePredictor(nodes, p.binned_left_cat_bitsets, p.raw_left_cat_bitsets)
            local[:, t] = walker.predict(Xf, known, walk_map, 1).astype(np.int64)
        return _global_leaves(local, table.roots)

    try:
        path = build_path(estimator, X, base_outputs, make_table, leaves, walk_input)
    except Exception:
        return None
    if path is None:
        return None
    classifier = hasattr(estimator, "classes_")
    try:
        values = np.concatenate([np.asarray(p.nodes["value"], np.float64) for p in predictors])
        init = np.zeros(estimator.n_trees_per_iteration_, dtype=np.float64)
        init += np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()
        with path.single_threaded():
            raw = estimator.decision_function(X) if classifier else None
    except Exception:
        return path
    link = RawLink(estimator, "hist", classifier)
    classes = np.arange(len(predictors)) % init.size
    return certified_sums(path, values, init, classes, link, raw) or path


def _gb_sums(estimator: Any, X: np.ndarray, path: RepredictPath, stages: list) -> RepredictPath:
    """GradientBoosting: init raw prediction, then ``learning_rate * value`` stage by stage."""
    classifier = hasattr(estimator, "classes_")
    try:
        scale = np.float64(estimator.learning_rate)
        values = np.concatenate([scale * est.tree_.value.reshape(-1) for est in stages])
        if any(est.tree_.value.shape[1:] != (1, 1) for est in stages):
            return path
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            start = np.asarray(estimator._raw_predict_init(X.astype(np.float32)), np.float64)
            raw = estimator.decision_function(X) if classifier else None
        if start.shape != (X.shape[0], estimator.estimators_.shape[1]):
            return path
        if not np.all(start == start[:1]):
            return path  # an init estimator whose prediction depends on the row
    except Exception:
        return path
    link = RawLink(estimator, "gb", classifier)
    classes = np.arange(len(stages)) % start.shape[1]
    return certified_sums(path, values, start[0], classes, link, raw) or path


# --- summing leaf values in the model's own order ---------------------------------------


def _moved_sums(
    left, right, feature, threshold, nan_left, special, roots, Xw, slot, new, changed,
    pair_rows, pair_trees, leaves, strict, nan_rule, zero_check, cat_row, left_bits,
    known_bits, values, init, tree_class, prefix, prefix_col, prev_same, next_same,
    first_of_class, raw_out, moved, undecided,
):  # fmt: skip
    """Loop kernel: the raw prediction of every row whose leaf moves in copy ``r``.

    The walk is :func:`_affected`'s, done once per (row, tree) pair for all copies: the
    part of the path before the first node that tests a permuted column (or a split that
    is not a plain threshold) reads only unpermuted values, so it is shared. Trees are
    taken in order (``pair_trees`` ascending). When copy ``r``'s row ``i`` first moves in a
    tree ``t0`` of class ``k``, its sum ``raw_out[r, i, k]`` restarts from the row's last
    unpermuted partial sum kept before ``t0`` (``prefix[i, prefix_col[c]]`` for the
    nearest earlier tree ``c`` of the class with a kept column, or ``init[k]``), adds the
    row's unpermuted leaf values of the class's trees after ``c`` and before ``t0``, and
    from then on every tree of class ``k`` adds the row's leaf value (the moved leaf where
    it moved): the same sequence of additions, in the dtype of ``values``, as summing
    every tree from ``init[k]`` in the model's order. Classes without a moved tree keep their
    unpermuted sums. ``moved[r, i]`` marks those rows; a row meeting a split LEAP does not
    decide gets ``undecided[r, i]`` instead (the model predicts it). Memory: a few arrays
    of ``(copies, rows)``, whatever the number of pairs.
    """
    R = changed.shape[0]
    P = pair_rows.shape[0]
    n, T = leaves.shape
    K = init.shape[0]
    here = np.full((R, n), -1, dtype=np.int64)  # the moved leaf in the current tree
    touched = np.empty(R * n, dtype=np.int64)
    active = np.zeros((R, n, K), dtype=np.bool_)  # the class's sum is being re-added
    members = np.empty((K, R * n), dtype=np.int64)  # per class: its active (copy, row)
    n_members = np.zeros(K, dtype=np.int64)
    p = 0
    for t in range(T):
        k = tree_class[t]
        n_touched = 0
        while p < P and pair_trees[p] == t:
            i = pair_rows[p]
            p += 1
            todo = False
            for r in range(R):
                if changed[r, i] and not undecided[r, i]:
                    todo = True
                    break
            if not todo:
                continue
            start = roots[t]
            while left[start] != -1:  # the shared part: unpermuted values, plain splits
                f = feature[start]
                if slot[f] >= 0 or special[start] or zero_check[start]:
                    break
                x = Xw[i, f]
                if x != x:
                    rule = nan_rule[start]
                    if rule == 1:
                        break
                    if rule == 0:
                        start = left[start] if nan_left[start] else right[start]
                        continue
                    x = 0.0
                if strict:
                    go_left = x < threshold[start]
                else:
                    go_left = x <= threshold[start]
                start = left[start] if go_left else right[start]
            for r in range(R):
                if not changed[r, i] or undecided[r, i]:
                    continue
                node = start
                undec = False
                while left[node] != -1:
                    f = feature[node]
                    q = slot[f]
                    x = Xw[i, f] if q < 0 else new[r, i, q]
                    if special[node] and not (cat_row[node] >= 0 and x != x):
                        b = cat_row[node]
                        if b < 0 or not (0 <= x < 256) or int(x) != x:
                            undec = True
                            break
                        c = int(x)
                        if (left_bits[b, c >> 5] >> (c & 31)) & 1:
                            node = left[node]
                        elif (known_bits[b, c >> 5] >> (c & 31)) & 1:
                            node = right[node]
                        else:
                            undec = True
                            break
                        continue
                    if x != x:
                        rule = nan_rule[node]
                        if rule == 1:
                            undec = True
                            break
                        if rule == 0:
                            node = left[node] if nan_left[node] else right[node]
                            continue
                        x = 0.0
                    if zero_check[node] and abs(x) <= 2e-35:
                        undec = True
                        break
                    if strict:
                        go_left = x < threshold[node]
                    else:
                        go_left = x <= threshold[node]
                    node = left[node] if go_left else right[node]
                if undec:
                    undecided[r, i] = True
                elif node != leaves[i, t]:
                    here[r, i] = node
                    touched[n_touched] = r * n + i
                    n_touched += 1
                    if not active[r, i, k]:
                        active[r, i, k] = True
                        members[k, n_members[k]] = r * n + i
                        n_members[k] += 1
                        c = prev_same[t]
                        while c >= 0 and prefix_col[c] < 0:
                            c = prev_same[c]
                        if c < 0:
                            raw_out[r, i, k] = init[k]
                            u = first_of_class[k]
                        else:
                            raw_out[r, i, k] = prefix[i, prefix_col[c]]
                            u = next_same[c]
                        while u != t:  # the unpermuted leaves since the kept sum
                            raw_out[r, i, k] += values[leaves[i, u]]
                            u = next_same[u]
        for s in range(n_members[k]):  # tree t adds to every re-added sum of its class
            key = members[k, s]
            r = key // n
            i = key - r * n
            leaf = here[r, i]
            if leaf < 0:
                leaf = leaves[i, t]
            raw_out[r, i, k] += values[leaf]
        for s in range(n_touched):
            key = touched[s]
            r = key // n
            here[r, key - r * n] = -1
    for k in range(K):
        for s in range(n_members[k]):
            key = members[k, s]
            r = key // n
            i = key - r * n
            if not undecided[r, i]:
                moved[r, i] = True


def sum_leaves(
    values: np.ndarray, init: np.ndarray, tree_class: np.ndarray, leaves: np.ndarray
) -> np.ndarray:
    """``(n_rows, K)`` raw predictions: ``init[k]`` plus the leaf values of class ``k``'s trees.

    Tree ``t`` adds to class ``tree_class[t]``, after the trees before it, one addition at
    a time in the dtype of ``values``, as the boosting libraries accumulate them.
    """
    K = init.shape[0]
    raw = np.empty((leaves.shape[0], K), dtype=values.dtype)
    for k in range(K):
        acc = np.full(leaves.shape[0], init[k], dtype=values.dtype)
        for t in np.flatnonzero(tree_class == k):
            acc += values[leaves[:, t]]
        raw[:, k] = acc
    return raw


def kept_columns(tree_class: np.ndarray, every: int = 1) -> np.ndarray:
    """Per tree, its column in :func:`partial_sums` (``-1``: not kept).

    Kept: every ``every``-th tree of each class, and each class's last tree.
    """
    column = np.full(tree_class.shape[0], -1, dtype=np.int64)
    kept = [np.empty(0, dtype=np.int64)]
    for k in np.unique(tree_class):
        trees = np.flatnonzero(tree_class == k)
        position = np.arange(trees.size)
        kept.append(trees[((position + 1) % every == 0) | (position == trees.size - 1)])
    kept_trees = np.sort(np.concatenate(kept))
    column[kept_trees] = np.arange(kept_trees.size)
    return column


def partial_sums(
    values: np.ndarray,
    init: np.ndarray,
    tree_class: np.ndarray,
    leaves: np.ndarray,
    every: int = 1,
) -> np.ndarray:
    """Each row's sum of its class after some trees, as :func:`sum_leaves` adds them.

    Column ``kept_columns(tree_class, every)[t]`` holds ``init[k]`` plus the leaf values
    of class ``k = tree_class[t]``'s trees up to and including ``t``, added in the same
    order and dtype; the column of a class's last tree is its :func:`sum_leaves` value.
    With ``every=1`` every tree is kept (``(n_rows, n_trees)``).
    """
    column = kept_columns(tree_class, every)
    out = np.empty((leaves.shape[0], int(np.count_nonzero(column >= 0))), dtype=values.dtype)
    for k in range(init.shape[0]):
        acc = np.full(leaves.shape[0], init[k], dtype=values.dtype)
        for t in np.flatnonzero(tree_class == k):
            acc += values[leaves[:, t]]  # tree by tree: no (rows, trees) array of values
            if column[t] >= 0:
                out[:, column[t]] = acc
    return out


def class_chains(tree_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tree: the previous and the next tree of its class (``-1``: none)."""
    prev_same = np.full(tree_class.shape[0], -1, dtype=np.int64)
    next_same = np.full(tree_class.shape[0], -1, dtype=np.int64)
    for k in np.unique(tree_class):
        trees = np.flatnonzero(tree_class == k)
        prev_same[trees[1:]] = trees[:-1]
        next_same[trees[:-1]] = trees[1:]
    return prev_same, next_same


def _moved_sums_numpy(
    left, right, feature, threshold, nan_left, special, roots, Xw, slot, new, changed,
    pair_rows, pair_trees, leaves, strict, nan_rule, zero_check, cat_row, left_bits,
    known_bits, values, init, tree_class, prefix, prefix_col, prev_same, next_same,
    first_of_class, raw_out, moved, undecided,
):  # fmt: skip
    # The same sums from init over every tree (``prefix`` and the chains only save the
    # compiled kernel additions whose result it already knows).
    table = TreeTable(
        left, right, feature, threshold, nan_left, special, roots,
        bool(strict), Xw.dtype == np.float32, nan_rule, zero_check,
        cat_row, left_bits, known_bits,
    )  # fmt: skip
    for r in range(changed.shape[0]):
        keep = changed[r, pair_rows]
        rows, trees = pair_rows[keep], pair_trees[keep]
        if rows.size == 0:
            continue

        def values_at(active, f, rows=rows, r=r):
            x = Xw[rows[active], f]
            q = slot[f]
            hit = q >= 0
            if hit.any():
                x[hit] = new[r, rows[active][hit], q[hit]]
            return x

        node, undec = _walk_nodes(table, Xw, rows, trees, values_at)
        undecided[r, rows[undec]] = True
        shift = ~undec & (node != leaves[rows, trees])
        shift &= ~undecided[r, rows]
        if not shift.any():
            continue
        moved_rows = np.unique(rows[shift])
        position = np.searchsorted(moved_rows, rows[shift])
        buf = leaves[moved_rows].astype(np.int64)
        buf[position, trees[shift]] = node[shift]
        moved[r, moved_rows] = True
        raw_out[r, moved_rows] = sum_leaves(values, init, tree_class, buf)


class RawLink:
    """The response methods of a scikit-learn booster, from its raw predictions.

    ``kind`` names the model's own code that maps raw predictions to outputs:
    ``"gb"`` (GradientBoosting) or ``"hist"`` (HistGradientBoosting). Probabilities and
    regression values go through the model's own loss object; labels are the model's
    threshold (``>= 0`` for GradientBoosting, ``> 0`` for HistGradientBoosting) or argmax,
    and a row whose raw predictions tie (a zero, or two equal maxima) is left to the model.
    """

    def __init__(self, model: Any, kind: str, classifier: bool) -> None:
        self.model = model
        self.kind = kind
        self.classifier = classifier

    def _layout(self, raw: np.ndarray) -> np.ndarray:
        # the array the model itself hands to its loss: C order (GB), Fortran order (HGB)
        return np.asfortranarray(raw) if self.kind == "hist" else np.ascontiguousarray(raw)

    def tied(self, raw: np.ndarray) -> np.ndarray:
        """Rows whose label the model must decide."""
        if not self.classifier:
            return np.zeros(raw.shape[0], dtype=bool)
        if raw.shape[1] == 1:
            return raw[:, 0] == 0
        top = raw.max(axis=1, keepdims=True)
        return (raw == top).sum(axis=1) > 1

    def outputs(self, raw: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        """The model's outputs of the rows whose raw predictions are ``raw`` (m, K)."""
        raw = self._layout(raw)
        K = raw.shape[1]
        loss = self.model._loss
        out = {}
        for name in methods:
            if name == "decision_function" and self.classifier:
                out[name] = raw.ravel() if K == 1 else raw.copy()
            elif name == "predict_proba" and self.classifier:
                given = raw.ravel() if (K == 1 and self.kind == "gb") else raw
                out[name] = np.asarray(loss.predict_proba(given))
            elif name == "predict" and self.classifier:
                if K == 1:
                    positive = raw[:, 0] >= 0 if self.kind == "gb" else raw[:, 0] > 0
                    encoded = positive.astype(int)
                else:
                    encoded = np.argmax(raw, axis=1)
                out[name] = self.model.classes_[encoded]
            elif name == "predict":
                values = raw.ravel()
                out[name] = values.copy() if self.kind == "gb" else loss.link.inverse(values)
            else:
                raise ValueError(f"no raw link for {name!r}")
        return out


class SumPath(RepredictPath):
    """Outputs of permuted copies from leaf values summed in the model's own order.

    A row whose leaf moves in some tree gets its raw prediction re-summed from its leaves
    (the unpermuted ones, the moved ones in their place), then the model's own link (see
    :class:`RawLink`). Rows that meet a split LEAP does not decide, or whose raw
    predictions tie, are re-predicted by the model as in :class:`RepredictPath`. The
    factory certifies, on the unpermuted rows (all of them, and subsets), that these sums
    and links give the model's outputs bit for bit.

    The link (and the model, for undecided rows) is called once for the moved rows of
    several groups (:data:`LINK_GROUPS`): a library's response method costs about a
    millisecond a call whatever the rows.

    Its work is a part of the model's own (the model walks every tree for every row and
    adds every leaf value; LEAP walks only the pairs whose path tests a permuted column and
    adds the leaves of the rows that moved), so the runner does not time it against the
    model (``bounded_by_model``).
    """

    bounded_by_model = True

    def __init__(
        self,
        path: RepredictPath,
        values: np.ndarray,
        init: np.ndarray,
        tree_class: np.ndarray,
        link: Any,
        base_raw: np.ndarray,
        prefix: np.ndarray | None = None,
    ) -> None:
        self.__dict__.update(path.__dict__)
        self.values = np.ascontiguousarray(values)
        self.init = np.ascontiguousarray(init, dtype=self.values.dtype)
        self.tree_class = np.ascontiguousarray(tree_class, dtype=np.int64)
        self.link = link
        self.base_raw = np.ascontiguousarray(base_raw, dtype=self.values.dtype)
        if prefix is None:
            prefix = partial_sums(
                self.values, self.init, self.tree_class, self.leaves, PARTIAL_SUMS_EVERY
            )
        self.prefix = np.ascontiguousarray(prefix, dtype=self.values.dtype)
        self.prefix_col = kept_columns(self.tree_class, PARTIAL_SUMS_EVERY)
        if self.prefix.shape != (self.leaves.shape[0], np.count_nonzero(self.prefix_col >= 0)):
            raise ValueError("partial sums kept for other trees")
        self.prev_same, self.next_same = class_chains(self.tree_class)
        self.first_of_class = np.full(self.init.shape[0], -1, dtype=np.int64)
        first = np.flatnonzero(self.prev_same < 0)
        self.first_of_class[self.tree_class[first]] = first

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy (always certified)."""
        return next(iter(self.outputs_many([cols], orders)))

    def outputs_many(self, groups, orders):  # type: ignore[override]
        """Outputs of every copy of every group, a few groups at a time (a generator)."""
        groups = [np.asarray(cols, dtype=np.int64) for cols in groups]
        for start in range(0, len(groups), LINK_GROUPS):
            yield from self._batch_outputs(groups[start : start + LINK_GROUPS], orders)

    def _sums(self, cols: np.ndarray, orders: np.ndarray) -> tuple:
        """Raw sums ``(R, m, K)`` of one group's copies, with ``moved`` and ``undecided``."""
        R, m = orders.shape
        Xw = self.Xw
        new = np.ascontiguousarray(Xw[orders[:, :, None], cols[None, None, :]])
        old = Xw[:, cols]
        width = {4: np.uint32, 8: np.uint64}[Xw.dtype.itemsize]
        changed = np.any(new.view(width) != old.view(width)[None], axis=2)
        pair_rows, pair_trees = self.index.pairs(cols)
        if np.any(pair_trees[1:] < pair_trees[:-1]):  # the kernel takes the trees in order
            by_tree = np.argsort(pair_trees, kind="stable")
            pair_rows, pair_trees = pair_rows[by_tree], pair_trees[by_tree]
        slot = np.full(Xw.shape[1], -1, dtype=np.int64)
        slot[cols] = np.arange(len(cols))
        raw = np.repeat(self.base_raw[np.newaxis], R, axis=0)
        moved = np.zeros((R, m), dtype=np.bool_)
        undecided = np.zeros((R, m), dtype=np.bool_)
        t = self.table
        kernel = compiled(_moved_sums) or _moved_sums_numpy
        kernel(
            t.left, t.right, t.feature, t.threshold, t.nan_left, t.special, t.roots, Xw,
            slot, new, changed, pair_rows, pair_trees, self.leaves, t.strict, t.nan_rule,
            t.zero_check, t.cat_row, t.left_bits, t.known_bits, self.values, self.init,
            self.tree_class, self.prefix, self.prefix_col, self.prev_same, self.next_same,
            self.first_of_class, raw, moved, undecided,
        )  # fmt: skip
        return raw, moved, undecided

    def _batch_outputs(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        R = orders.shape[0]
        picks, summed_parts, undecided_picks = [], [], []
        for cols in groups:
            raw, moved, undecided = self._sums(cols, orders)
            copy_of, row_of = np.nonzero(moved)
            summed = raw[copy_of, row_of]
            tied = self.link.tied(summed)
            if tied.any():
                undecided[copy_of[tied], row_of[tied]] = True
                copy_of, row_of, summed = copy_of[~tied], row_of[~tied], summed[~tied]
            picks.append((copy_of, row_of))
            summed_parts.append(summed)
            undecided_picks.append((cols, *np.nonzero(undecided)))
        summed = np.concatenate(summed_parts)
        if summed.shape[0] and getattr(self.link, "calls_model", False):
            with self._lock, thread_limits(1):
                linked = self.link.outputs(summed, self.methods)
        elif summed.shape[0]:  # NumPy only: no thread limit to set and restore (~0.6 ms a call)
            linked = self.link.outputs(summed, self.methods)
        else:
            linked = {}
        predicted: list[dict[str, np.ndarray]] = [{} for _ in groups]
        if any(u_row.size for _, _, u_row in undecided_picks):
            predicted = self._predict_rows(undecided_picks, orders)
        answers = []
        start = 0
        for (copy_of, row_of), (_, u_copy, u_row), pred in zip(
            picks, undecided_picks, predicted, strict=True
        ):
            stop = start + row_of.size
            outs = {}
            for name in self.methods:
                out = np.repeat(self.base[name][np.newaxis], R, axis=0)
                if name in linked and row_of.size:
                    out[copy_of, row_of] = linked[name][start:stop]
                if u_row.size:
                    out[u_copy, u_row] = pred[name]
                outs[name] = out
            start = stop
            answers.append((outs, np.ones(R, dtype=bool)))
        return answers


def certified_sums(
    path: RepredictPath,
    values: np.ndarray,
    init: np.ndarray,
    tree_class: np.ndarray,
    link: Any,
    raw: Any,
) -> SumPath | None:
    """A :class:`SumPath` when sums and link reproduce the model on the unpermuted rows.

    ``link`` has ``tied(raw)`` (rows the model must decide) and ``outputs(raw, methods)``
    (see :class:`RawLink`). ``raw`` is the model's own raw prediction of every row,
    ``(n_rows, K)`` (``None`` for models that give none apart from their outputs). Checked
    bit for bit: LEAP's sums of the model's own leaves against ``raw``; the link of those
    sums, on all rows and on subsets of them, against the model's outputs.
    """
    if not path.refine:
        return None
    try:
        values = np.ascontiguousarray(values)
        init = np.asarray(init, dtype=values.dtype).reshape(-1)
        tree_class = np.asarray(tree_class, dtype=np.int64)
        if tree_class.shape != (path.leaves.shape[1],) or values.shape != path.table.left.shape:
            return None
        if tree_class.size and not (0 <= tree_class.min() and tree_class.max() < init.size):
            return None
        mine = sum_leaves(values, init, tree_class, path.leaves)
        if raw is not None:
            raw = np.asarray(raw)
            if raw.dtype != mine.dtype or not _same_bits(mine, raw.reshape(mine.shape)):
                return None
        # The kernel restarts a class's sum from these partial sums: their last column per
        # class must be the sums themselves.
        prefix = partial_sums(values, init, tree_class, path.leaves, PARTIAL_SUMS_EVERY)
        column = kept_columns(tree_class, PARTIAL_SUMS_EVERY)
        for k in range(init.size):
            trees = np.flatnonzero(tree_class == k)
            total = prefix[:, column[trees[-1]]] if trees.size else np.full(mine.shape[0], init[k])
            if not _same_bits(total, mine[:, k]):
                return None
        m = mine.shape[0]
        for rows in (np.arange(m), np.arange(0, m, 7), np.arange(m - 2, m), np.arange(1)):
            keep = rows[~link.tied(mine[rows])]
            if keep.size == 0:
                continue
            got = link.outputs(mine[keep], path.methods)
            if not all(_same_bits(got[k], np.asarray(path.base[k])[keep]) for k in path.methods):
                return None
    except Exception:  # a loss or layout this code does not know: the model re-predicts
        return None
    return SumPath(path, values, init, tree_class, link, mine, prefix)
