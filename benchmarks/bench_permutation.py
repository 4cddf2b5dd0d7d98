"""LEAP's ``permutation`` method against scikit-learn's ``permutation_importance``, as a matrix.

For every workload of :mod:`workloads` (model family × data distribution × scorer; 435
columns, 30 % held out, ``n_repeats=5``, ``random_state=0``), both implementations run on the
same fitted model and held-out rows in this one process with ``n_jobs=-1``. Reported per
workload: both wall-clock times, their ratio, the largest absolute difference between the
two ``(n_features, n_repeats)`` importance arrays, and the peak memory each allocates
(``tracemalloc``, in separate sequential runs with ``n_jobs=1``, so that all allocations
happen in this process).

Usage::

    python benchmarks/bench_permutation.py                    # the whole matrix
    python benchmarks/bench_permutation.py --quick            # 1/5 of the rows
    python benchmarks/bench_permutation.py --select 'knn-*' 'logreg-*/gauss' --no-memory
    python benchmarks/bench_permutation.py --list
    python benchmarks/bench_permutation.py --output results.md
    python benchmarks/bench_permutation.py --select 'wrapped-*' --rounds 5

Each workload is first warmed up on a tiny problem with the same model (process pool
started, compiled kernels loaded), so one-off start-up costs are not counted for either.
With ``--rounds N`` both run ``N`` times, alternating which goes first, and the times are
the medians: on a shared machine one run each cannot tell 0.95× from parity.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import gc
import importlib.util
import os
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.inspection import permutation_importance

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import N_REPEATS, WORKLOADS, Workload, check_names, held_out

from leap.builtins.methods.permutation.method import PermutationMethod

COLUMNS = (
    "workload",
    "model",
    "scorer",
    "X held out",
    "sklearn s",
    "LEAP s",
    "ratio",
    "target",
    "max abs diff",
    "sklearn MiB",
    "LEAP MiB",
    "memory ratio",
)


def run_sklearn(model, X, y, scoring, n_jobs):
    return permutation_importance(
        model, X, y, scoring=scoring, n_repeats=N_REPEATS, random_state=0, n_jobs=n_jobs
    ).importances


def run_leap(model, X, y, scoring, n_jobs):
    scores = PermutationMethod().compute(
        model, X, y, scoring=scoring, n_repeats=N_REPEATS, random_state=0, n_jobs=n_jobs
    )
    (result,) = scores.values()
    return result.importances


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


def model_name(model) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        return " + ".join(type(s).__name__ for _, s in steps)
    return type(model).__name__


def warm_up(work: Workload) -> None:
    """Both implementations once on a tiny problem with this workload's model."""
    X_train, X_test, y_train, y_test = held_out(work.distribution, work.task, 80, seed=1)
    try:
        model = work.make_model().fit(X_train, y_train)
        run_sklearn(model, X_test[:, :], y_test, work.scoring, -1)
        run_leap(model, X_test, y_test, work.scoring, -1)
    except Exception:  # a tiny problem some model cannot fit: no warm-up, not an error
        pass


def measure(work: Workload, rows: int, memory: bool, rounds: int = 1) -> dict[str, str]:
    """Fit the workload's model and time both implementations (median of ``rounds``
    alternating runs); one table row."""
    X_train, X_test, y_train, y_test = held_out(work.distribution, work.task, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of small or hard problems
        model = work.make_model().fit(X_train, y_train)
    warm_up(work)
    times: dict[str, list[float]] = {"leap": [], "sklearn": []}
    results = {}
    runs = [("leap", run_leap), ("sklearn", run_sklearn)]
    for i in range(rounds):  # alternating: neither always runs second, on a warmer machine
        for name, fn in runs if i % 2 == 0 else runs[::-1]:
            t, results[name] = timed(fn, model, X_test, y_test, work.scoring, -1)
            times[name].append(t)
    ours, theirs = results["leap"], results["sklearn"]
    t_leap, t_sk = float(np.median(times["leap"])), float(np.median(times["sklearn"]))
    row = {
        "workload": work.name,
        "model": model_name(model),
        "scorer": work.scoring or "score",
        "X held out": f"{X_test.shape[0]} × {X_test.shape[1]}",
        "sklearn s": f"{t_sk:.2f}",
        "LEAP s": f"{t_leap:.2f}",
        "ratio": f"{t_sk / t_leap:.1f}×",
        "target": f"≥{work.target:g}×",
        "max abs diff": f"{float(np.max(np.abs(ours - theirs))):.1e}",
        "sklearn MiB": "–",
        "LEAP MiB": "–",
        "memory ratio": "–",
    }
    if memory:
        m_sk = peak_mib(run_sklearn, model, X_test, y_test, work.scoring, 1)
        m_leap = peak_mib(run_leap, model, X_test, y_test, work.scoring, 1)
        row["sklearn MiB"] = f"{m_sk:.1f}"
        row["LEAP MiB"] = f"{m_leap:.1f}"
        row["memory ratio"] = f"{m_leap / m_sk:.2f}×"
    return row


def select(patterns: list[str] | None) -> list[Workload]:
    """The workloads whose name matches one of ``patterns`` (all when none are given)."""
    check_names(WORKLOADS)
    if not patterns:
        return list(WORKLOADS)
    chosen = [w for w in WORKLOADS if any(fnmatch.fnmatchcase(w.name, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"no workload matches {' '.join(patterns)} (see --list)")
    return chosen


def header_lines() -> list[str]:
    numba = importlib.util.find_spec("numba") is not None and not os.environ.get(
        "LEAP_DISABLE_NUMBA"
    )
    return [
        f"<!-- {datetime.date.today().isoformat()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · numpy {np.__version__} · "
        f"scikit-learn {sklearn.__version__} · numba kernels {'on' if numba else 'off'} · "
        f"n_repeats={N_REPEATS}, random_state=0, n_jobs=-1 for both; times in seconds -->",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", nargs="+", metavar="PATTERN", help="workload name globs")
    parser.add_argument("--quick", action="store_true", help="1/5 of the rows")
    parser.add_argument("--rows", type=int, help="rows before the hold-out, for every workload")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    parser.add_argument(
        "--rounds", type=int, default=1, help="timed runs of each, alternating (medians)"
    )
    parser.add_argument("--list", action="store_true", help="list the workload names")
    args = parser.parse_args(argv)
    workloads = select(args.select)
    if args.list:
        for w in workloads:
            print(w.name)
        return
    lines = header_lines()
    print("\n".join(lines), flush=True)
    for work in workloads:
        rows = args.rows or (max(60, work.rows // 5) if args.quick else work.rows)
        row = measure(work, rows, memory=not args.no_memory, rounds=max(1, args.rounds))
        line = "| " + " | ".join(row[c] for c in COLUMNS) + " |"
        print(line, flush=True)
        lines.append(line)
    if args.output is not None:
        args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
