"""Runs the permutations of every group and scores them as scikit-learn would.

Per group of columns and per repeat there is one permuted copy of the used rows. Permuting
only constant columns leaves the data bitwise unchanged, so those copies score exactly as
the unpermuted rows (so do groups a fast path declares unaffected, with a recognised
scorer); nothing is predicted for them. Otherwise, with a recognised scorer, a copy's
outputs come from a fast path or from the model itself, called on batches of stacked copies,
and the scorer turns them into a number (:mod:`.scoring`); with an opaque scorer the
scorer gets the estimator and a permuted copy, one at a time.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from tqdm.auto import tqdm

from leap.builtins.methods.permutation.batched import BatchedScorer
from leap.builtins.methods.permutation.copies import CopyStack, WorkingCopy
from leap.builtins.methods.permutation.fastpaths import FastPath, thread_limits
from leap.builtins.methods.permutation.neighbors import call_rows, copy_threads
from leap.builtins.methods.permutation.scoring import (
    AccuracyCounter,
    RowShares,
    ScorerPlan,
    compact_shares,
    score_outputs,
)


@dataclass
class Context:
    """Everything a task needs; shared read-only by threads, pickled for processes."""

    estimator: Any
    X: Any  # the used rows, in the caller's format
    y: Any
    sample_weight: Any
    orders: np.ndarray
    scorer: Any
    sub_score: Any  # score of the unpermuted used rows
    plan: ScorerPlan | None = None
    fast: FastPath | None = None
    accuracy: AccuracyCounter | None = None
    batched: BatchedScorer | None = None  # other recognised metrics, many copies at once
    constant: np.ndarray | None = None  # per column: bitwise constant over the used rows
    capacity: int = 1
    #: OpenMP threads for model calls on copies, as scikit-learn's would see (``None``: the
    #: caller's own); set by :func:`run_all` for models whose outputs depend on it (k-NN).
    threads: int | None = None


def weighted_score(scorer: Any, estimator: Any, X: Any, y: Any, sample_weight: Any) -> Any:
    """``scorer(estimator, X, y)``, passing ``sample_weight`` only when given (as sklearn)."""
    if sample_weight is not None:
        return scorer(estimator, X, y, sample_weight=sample_weight)
    return scorer(estimator, X, y)


def same_score(a: Any, b: Any) -> bool:
    """Bitwise equality of two scores (floats or dicts of floats); NaN equals NaN."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same_score(a[k], b[k]) for k in a)
        )
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return fa == fb or (math.isnan(fa) and math.isnan(fb))


def constant_columns(X: Any) -> np.ndarray | None:
    """Per column: all used rows hold bitwise the same value (``None``: not numeric)."""
    if isinstance(X, pd.DataFrame):
        dtypes = set(X.dtypes)
        if len(dtypes) != 1 or not isinstance(next(iter(dtypes)), np.dtype):
            return None
        X = X.to_numpy()
    kind, size = X.dtype.kind, X.dtype.itemsize
    if X.shape[0] == 0 or kind not in "biufc":
        return None
    raw = X.view(f"u{size}") if kind in "fc" and size in (2, 4, 8) else X
    if kind in "fc" and size not in (2, 4, 8):
        return None
    return np.all(raw == raw[:1], axis=0)


def _constant(ctx: Context, cols: np.ndarray) -> bool:
    """Permuting only constant columns leaves the data bitwise unchanged."""
    return ctx.constant is not None and bool(ctx.constant[cols].all())


def _trivial(ctx: Context, cols: np.ndarray) -> bool:
    """Every permuted copy of ``cols`` scores exactly as the unpermuted data."""
    if _constant(ctx, cols):
        return True
    return ctx.plan is not None and ctx.fast is not None and ctx.fast.unaffected(cols)


#: Copies whose outputs are scored together (one vectorised accuracy count). The batch's
#: stacked labels and per-row shares are each (copies × rows): a few dozen copies already
#: make the per-batch cost negligible, more only hold memory.
_SCORE_BATCH = 16


def _slice(out: Any, s: int, m: int) -> Any:
    if isinstance(out, list):
        return [np.asarray(o)[s * m : (s + 1) * m] for o in out]
    return np.asarray(out)[s * m : (s + 1) * m]


#: A task's work: ``(group index, columns, repeats to compute)``.
Item = tuple[int, np.ndarray, Sequence[int]]


def run_task(ctx: Context, items: Sequence[Item]) -> tuple[list[tuple[int, list]], list]:
    """Scores of the given repeats of the groups ``items``.

    Returns ``(results, declined)``: per group, its scores (``None`` where not computed),
    and the ``(group index, repeat)`` copies a fast path declined, which the caller
    evaluates with the model outside this (possibly threaded) task. :func:`run_all`
    answers trivial groups itself; any group given here is computed.
    """
    if ctx.threads is not None:
        with thread_limits(ctx.threads, "openmp"):
            return run_task(replace(ctx, threads=None), items)
    if ctx.plan is None:
        return _run_opaque(ctx, items), []
    return _run_replay(ctx, items)


def _run_opaque(ctx: Context, items: Sequence[Item]) -> list[tuple[int, list]]:
    n_repeats = ctx.orders.shape[0]
    work = None
    results = []
    for index, cols, repeats in items:
        if work is None:
            work = WorkingCopy(ctx.X)
        scores: list = [None] * n_repeats
        for r in repeats:
            permuted = work.permute(cols, ctx.orders[r])
            scores[r] = weighted_score(
                ctx.scorer, ctx.estimator, permuted, ctx.y, ctx.sample_weight
            )
        work.restore(cols)
        results.append((index, scores))
    return results


class _Replayer:
    """Collects copies' outputs (fast path or batched model calls) and scores them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.stack: CopyStack | None = None
        self.pending: list[tuple[int, int, np.ndarray]] = []
        self.ready: list[tuple[int, int, dict[str, Any]]] = []

    def add_ready(self, slot: int, r: int, outputs: dict[str, Any]) -> None:
        self.ready.append((slot, r, outputs))

    def add_pending(self, slot: int, r: int, cols: np.ndarray) -> None:
        self.pending.append((slot, r, cols))
        if len(self.pending) >= self.ctx.capacity:
            self.flush_model()

    def flush_model(self) -> None:
        """Evaluate the pending copies with the model, in one batch."""
        if not self.pending:
            return
        ctx = self.ctx
        if self.stack is None:
            self.stack = CopyStack(ctx.X, ctx.capacity)
        batch = self.stack.batch([(cols, ctx.orders[r]) for _, r, cols in self.pending])
        m = ctx.orders.shape[1]
        assert ctx.plan is not None  # replayed scorers only
        outs = {name: getattr(ctx.estimator, name)(batch) for name in ctx.plan.methods}
        for s, (slot, r, _) in enumerate(self.pending):
            self.add_ready(slot, r, {name: _slice(out, s, m) for name, out in outs.items()})
        self.pending = []

    def score_ready(self, scores: list[list]) -> None:
        """Turn the ready outputs into scores (vectorised accuracy when possible)."""
        ctx = self.ctx
        if not self.ready:
            return
        if ctx.accuracy is not None:
            labels = np.stack([np.asarray(out["predict"]) for _, _, out in self.ready])
            values = ctx.accuracy.scores(labels)  # floats (with per-row shares when asked)
            for (slot, r, _), value in zip(self.ready, values, strict=True):
                scores[slot][r] = value
        elif ctx.batched is not None:
            values = ctx.batched.scores([out for _, _, out in self.ready], ctx)
            for (slot, r, _), value in zip(self.ready, values, strict=True):
                scores[slot][r] = value
        else:
            assert ctx.plan is not None  # replayed scorers only
            for slot, r, out in self.ready:
                scores[slot][r] = score_outputs(
                    ctx.scorer, ctx.plan, ctx.estimator, ctx.X, ctx.y, ctx.sample_weight, out
                )
        for slot in {slot for slot, _, _ in self.ready}:
            scores[slot] = compact_shares(scores[slot])  # complete groups keep mean shares
        self.ready = []


#: Groups a fast path answers at a time: their outputs wait for the scorer, so fewer at
#: once keep a task's memory to a few copies' outputs.
_FAST_GROUPS = 8


def _fast_answers(fast: FastPath, items: Sequence[Item], orders: np.ndarray) -> Iterator[tuple]:
    """``fast``'s ``(outputs, exact)`` for each item's group, made a few groups at a time."""
    group_cols = [cols for _, cols, _ in items]
    many = getattr(fast, "outputs_many", None)
    if many is None:
        yield from (fast.outputs(cols, orders) for cols in group_cols)
        return
    for start in range(0, len(group_cols), _FAST_GROUPS):
        yield from many(group_cols[start : start + _FAST_GROUPS], orders)


def _run_replay(ctx: Context, items: Sequence[Item]) -> tuple[list[tuple[int, list]], list]:
    n_repeats = ctx.orders.shape[0]
    scores: list[list] = [[None] * n_repeats for _ in items]
    replayer = _Replayer(ctx)
    declined = []
    if ctx.fast is not None:
        for slot, (outs, exact) in enumerate(_fast_answers(ctx.fast, items, ctx.orders)):
            index, _, repeats = items[slot]
            for r in repeats:
                if exact[r]:
                    replayer.add_ready(slot, r, {name: out[r] for name, out in outs.items()})
                else:
                    declined.append((index, r))
            if len(replayer.ready) >= _SCORE_BATCH:
                replayer.score_ready(scores)
    else:
        for slot, (_, cols, repeats) in enumerate(items):
            for r in repeats:
                replayer.add_pending(slot, r, cols)
            if len(replayer.ready) >= _SCORE_BATCH:
                replayer.score_ready(scores)
    replayer.flush_model()
    replayer.score_ready(scores)
    results = [
        (index, group_scores) for (index, _, _), group_scores in zip(items, scores, strict=True)
    ]
    return results, declined


def _fast_path_pays(
    ctx: Context,
    work: list[Item],
    results: list,
    declined: dict[int, list[int]],
    shares: RowShares,
) -> tuple[bool, list[Item]]:
    """Time a group through the fast path and one through the model; keep the faster.

    Both answers are exact, so the choice changes only the time. The copies the fast path
    declines cost a model call each, and count against it. A fast path slower on its first
    group (which may pay a compilation) is timed once more before it is given up.
    """
    n_repeats = ctx.orders.shape[0]
    into = (results, declined, shares)
    model, _ = _run_here(replace(ctx, fast=None), work[:1], *into)
    fast, refused = _run_here(ctx, work[1:2], *into)
    fast += model * refused / max(1, n_repeats)
    if fast <= FAST_PATH_MARGIN * model:
        return True, work[2:]
    again, refused = _run_here(ctx, work[2:3], *into)
    again += model * refused / max(1, n_repeats)
    return again <= FAST_PATH_MARGIN * model, work[3:]


def _run_here(
    ctx: Context,
    items: list[Item],
    results: list,
    declined: dict[int, list[int]],
    shares: RowShares,
) -> tuple[float, int]:
    """Run ``items`` in this thread into ``results`` (declined copies noted); the seconds
    taken and the number of copies declined (for the cost models)."""
    start = time.perf_counter()
    done, refused = run_task(ctx, items)
    elapsed = time.perf_counter() - start
    _fill(results, done, shares)
    for index, r in refused:
        declined.setdefault(index, []).append(r)
    return elapsed, len(refused)


def _chunks(items: list, n_chunks: int) -> list[list]:
    bounds = np.linspace(0, len(items), max(1, n_chunks) + 1).round().astype(int)
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _fill(results: list, done: list[tuple[int, list]], shares: RowShares) -> None:
    for index, group_scores in done:
        if results[index] is None:
            results[index] = group_scores
        else:
            for r, value in enumerate(group_scores):
                if value is not None:
                    results[index][r] = value
        if all(value is not None for value in results[index]):  # complete: keep mean shares
            results[index] = shares.adopt(index, results[index])


#: Seconds a process pool costs before it saves any (waking or starting the workers, and
#: sending them the model and the data): an order of magnitude for ordinary models.
POOL_OVERHEAD_SECONDS = 0.5


def pool_pays(seconds_per_group: float, n_groups: int, n_workers: int) -> bool:
    """Whether ``n_groups`` groups of the measured cost finish sooner in a process pool."""
    serial = seconds_per_group * n_groups
    return serial - serial / max(1, n_workers) > POOL_OVERHEAD_SECONDS


def _default_process_pool() -> bool:
    """No ``joblib.parallel_config`` chose a backend other than the default process pool."""
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    return type(backend).__name__ == "LokyBackend"


#: With at least this many groups to permute, a fast path is timed against the model on
#: one group and given up where it is slower (one group's cost, against many saved).
FAST_PATH_TRIAL_GROUPS = 16
#: A fast path's groups run in threads only when they would take at least this long in
#: one (measured, at load 4 on 2 cores: Ridge's 0.05 s run took 0.07-0.1 s in two threads;
#: a 3-class LogisticRegression's 0.18 s took 0.15 s).
THREADS_MIN_SECONDS = 0.15
#: A fast path is given up only when it is this much slower than the model, twice: one
#: timing on a busy machine must not turn off a path that is usually faster.
FAST_PATH_MARGIN = 1.25


def run_all(
    ctx: Context,
    groups: Sequence[np.ndarray],
    *,
    n_jobs: int | None,
    progress: bool | str,
    shares: RowShares,
) -> list[list]:
    """Scores of every repeat of every group, in group order, computed by joblib workers.

    Fast paths run in threads (their kernels release the GIL); model calls run in processes
    like scikit-learn's, unless a ``joblib.parallel_config`` context says otherwise, or the
    job is too small for a pool to pay (:func:`pool_pays`, with the measured time of the
    first group), in which case it runs in this thread. The
    copies a fast path declines (ties, near-ties) are evaluated afterwards in this thread,
    so the model's own threads (OpenMP, BLAS) never compete with LEAP's. Each group's
    scores are handed to ``shares`` as soon as all its repeats are in.
    """
    n_groups = len(groups)
    n_repeats = ctx.orders.shape[0]
    ctx = replace(ctx, threads=copy_threads(ctx.estimator, n_jobs))
    limit = call_rows(ctx.estimator, ctx.X.shape[0], ctx.threads)
    if limit is not None:  # stacked copies would be searched otherwise than one copy
        ctx = replace(ctx, capacity=max(1, min(ctx.capacity, limit // ctx.X.shape[0])))
    results: list[list | None] = [None] * n_groups
    work: list[Item] = []
    for index, cols in enumerate(groups):
        if _trivial(ctx, cols):  # nothing to predict: answer here, keep tasks balanced
            results[index] = shares.adopt(index, [ctx.sub_score] * n_repeats)
        else:
            work.append((index, cols, range(n_repeats)))
    n_workers = max(1, effective_n_jobs(n_jobs))
    declined: dict[int, list[int]] = {}
    # A label (the engine passes "features", "sensor pairs", ...) says what is counted.
    unit = progress if isinstance(progress, str) and progress else "columns"
    with tqdm(total=n_groups, disable=not progress, desc=f"permuting {unit}", unit="") as bar:
        bar.update(n_groups - len(work))
        trial = not getattr(ctx.fast, "bounded_by_model", False)
        if ctx.fast is not None and trial and len(work) >= FAST_PATH_TRIAL_GROUPS:
            # Cost model of the fast path itself: on data where it cannot prune (heavy
            # tails, ties) it may cost more than the model; then the model answers the rest.
            # A path whose work is a part of the model's own (``bounded_by_model``) is not
            # timed: the trial would cost one group of model calls and could only agree.
            pays, work = _fast_path_pays(ctx, work, results, declined, shares)
            bar.update(n_groups - len(work) - bar.n)
            if not pays:
                ctx = replace(ctx, fast=None)
        threads = ctx.fast is not None or n_workers == 1
        if ctx.fast is not None and n_workers > 1 and len(work) > _FAST_GROUPS:
            # Cost model of threads: a fast path whose whole run is short (a linear model:
            # milliseconds per group) loses more to the GIL and a thread team than a second
            # core gives back, so the first groups are timed here and the rest stay here
            # when they would take less than THREADS_MIN_SECONDS.
            elapsed, _ = _run_here(ctx, work[:_FAST_GROUPS], results, declined, shares)
            work = work[_FAST_GROUPS:]
            bar.update(n_groups - len(work) - bar.n)
            if elapsed / _FAST_GROUPS * len(work) < THREADS_MIN_SECONDS:
                n_jobs = 1
        if not threads and work and _default_process_pool():
            # Cost model: time one group here; the pool is used only where it pays.
            elapsed, _ = _run_here(ctx, work[:1], results, declined, shares)
            work = work[1:]
            bar.update(n_groups - len(work) - bar.n)
            if not pool_pays(elapsed, len(work), n_workers):
                threads, n_jobs = True, 1
        n_chunks = min(len(work), 16 * n_workers)
        if progress:
            n_chunks = min(len(work), max(n_chunks, 100))
        parallel = Parallel(
            n_jobs=n_jobs, prefer="threads" if threads else "processes", return_as="generator"
        )
        for done, refused in parallel(delayed(run_task)(ctx, c) for c in _chunks(work, n_chunks)):
            _fill(results, done, shares)
            for index, r in refused:
                declined.setdefault(index, []).append(r)
            bar.update(len(done))
    if declined:
        # Here, not in a pool: the models with fast paths (k-NN, linear, trees) parallelise
        # their own predictions, and a fresh process pool would cost more than it saves.
        rest = [(index, groups[index], repeats) for index, repeats in declined.items()]
        _fill(results, run_task(replace(ctx, fast=None), rest)[0], shares)
    return cast("list[list]", results)  # every group is filled by now
