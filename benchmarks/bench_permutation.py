"""LEAP's ``permutation`` method against scikit-learn's ``permutation_importance``.

Runs both on the same fitted model and held-out data in this one process and prints, per
model: both wall-clock times (``n_jobs=-1`` for both), their ratio, the largest absolute
difference between the two importance arrays (every repeat), and the peak memory each
allocates (``tracemalloc``, measured in separate sequential runs so that all work happens
in this process).

Usage::

    python benchmarks/bench_permutation.py                # every model, with memory
    python benchmarks/bench_permutation.py --models knn lr --no-memory

Both implementations are warmed up first on a tiny problem (process pool started, compiled
kernels loaded), so one-off start-up costs are not counted for either.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from leap.builtins.methods.permutation import PermutationMethod
from leap.builtins.methods.permutation._jit import numba_enabled
from leap.workflows.demo import make_leap_dataset

N_REPEATS = 5


@dataclass
class Workload:
    name: str
    rows: int
    make_model: Callable[[], object]
    target: str


WORKLOADS = {
    "knn": Workload("KNN (k=5)", 1500, lambda: KNeighborsClassifier(5), "≥10×"),
    "rf": Workload(
        "RandomForest (100 trees)",
        1500,
        lambda: RandomForestClassifier(100, random_state=0),
        "≥3×",
    ),
    "lr": Workload("LogisticRegression", 3000, lambda: LogisticRegression(max_iter=2000), "≥20×"),
    "pipe": Workload(
        "StandardScaler + LogisticRegression",
        3000,
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "≥10×",
    ),
    "svc": Workload("SVC (rbf)", 600, lambda: SVC(), "≥1×"),
}


def held_out(rows: int):
    """Synthetic LEAP features (435 channel pairs), 30 % held out, stratified."""
    data = make_leap_dataset(n_participants=rows // 30, windows_per_participant=30)
    return train_test_split(data.X, data.y, test_size=0.3, random_state=0, stratify=data.y)


def run_sklearn(model, X, y, n_jobs):
    return permutation_importance(
        model, X, y, n_repeats=N_REPEATS, random_state=0, n_jobs=n_jobs
    ).importances


def run_leap(model, X, y, n_jobs):
    scores = PermutationMethod().compute(
        model, X, y, n_repeats=N_REPEATS, random_state=0, n_jobs=n_jobs
    )
    return scores["score"].importances


def timed(fn, *args):
    gc.collect()
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def peak_mib(fn, *args) -> float:
    """Peak bytes allocated (tracemalloc) while ``fn`` runs, in MiB."""
    gc.collect()
    tracemalloc.start()
    try:
        fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def warm_up() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y = (X[:, 0] > 0).astype(int)
    for model in (
        KNeighborsClassifier(3),
        RandomForestClassifier(5, random_state=0),
        LogisticRegression(),
        SVC(),
    ):
        model.fit(X, y)
        run_sklearn(model, X, y, -1)
        run_leap(model, X, y, -1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    args = parser.parse_args(argv)

    print(
        f"# {datetime.date.today().isoformat()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · numpy {np.__version__} · "
        f"scikit-learn {sklearn.__version__} · numba kernels {'on' if numba_enabled() else 'off'}"
    )
    print(f"# n_repeats={N_REPEATS}, random_state=0, n_jobs=-1 for both; times in seconds")
    warm_up()
    header = (
        "| model | X held out | sklearn s | LEAP s | ratio | target | max abs diff "
        "| sklearn peak MiB | LEAP peak MiB | memory ratio |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for key in args.models:
        work = WORKLOADS[key]
        X_train, X_test, y_train, y_test = held_out(work.rows)
        model = work.make_model().fit(X_train, y_train)
        t_leap, ours = timed(run_leap, model, X_test, y_test, -1)
        t_sk, theirs = timed(run_sklearn, model, X_test, y_test, -1)
        diff = float(np.max(np.abs(ours - theirs)))
        memory = "| – | – | – |"
        if not args.no_memory:
            m_sk = peak_mib(run_sklearn, model, X_test, y_test, 1)
            m_leap = peak_mib(run_leap, model, X_test, y_test, 1)
            memory = f"| {m_sk:.1f} | {m_leap:.1f} | {m_leap / m_sk:.2f}× |"
        print(
            f"| {work.name} | {X_test.shape[0]} × {X_test.shape[1]} | {t_sk:.2f} | {t_leap:.2f} "
            f"| {t_sk / t_leap:.1f}× | {work.target} | {diff:.1e} {memory}",
            flush=True,
        )


if __name__ == "__main__":
    main()
