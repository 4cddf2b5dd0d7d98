"""LEAP plugin: the built-in permutation method, scaled out on a Dask cluster.

The columns (or groups) are permuted in parallel by the cluster's workers through
joblib's Dask backend. Every column keeps the seed the local run gives it, so the
numbers are identical to ``method="permutation"``. The cluster is found, in order, from:
the ``scheduler`` argument of :class:`DaskMethod`, :func:`use_scheduler`, the ``--scheduler``
option of ``leap analyze``, a ``[dask]`` table with ``scheduler`` in its ``--config`` file,
the environment variable ``LEAP_DASK_SCHEDULER``, and finally the ``distributed.Client``
already open in the process.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sklearn.utils import check_array

from leap import MethodScores, get_engine, hookimpl
from leap.data.files import read_settings
from leap.errors import LeapError, PluginError, one_line

__all__ = ["SCHEDULER_ENV", "DaskMethod", "scheduler_address", "use_scheduler"]

#: Environment variable holding the scheduler address, e.g. ``tcp://10.0.0.5:8786``.
SCHEDULER_ENV = "LEAP_DASK_SCHEDULER"
_scheduler: ContextVar[str | None] = ContextVar("leap_dask_scheduler", default=None)


@contextmanager
def use_scheduler(address: str | None) -> Iterator[None]:
    """Within the block, run ``method="dask"`` on the scheduler at ``address``."""
    token = _scheduler.set(address)
    try:
        yield
    finally:
        _scheduler.reset(token)


def scheduler_address(explicit: str | None = None) -> str | None:
    """The scheduler to use: ``explicit``, else :func:`use_scheduler`'s, else the environment's."""
    return explicit or _scheduler.get() or os.environ.get(SCHEDULER_ENV, "").strip() or None


class DaskMethod:
    """Permutation importance computed on a ``dask.distributed`` cluster.

    Parameters
    ----------
    scheduler : str, optional
        Scheduler address (``tcp://host:8786``); see the module docs for the fallbacks.
    timeout : float
        Seconds to wait for the scheduler to answer, and for a worker to join.
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, timeout: float = 10.0) -> None:
        self.scheduler = scheduler
        self.timeout = timeout

    def compute(
        self,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        groups: Sequence[Sequence[int]] | None = None,
        n_jobs: int | None = None,
        **settings: Any,
    ) -> dict[str, MethodScores]:
        """The built-in permutation method's ``compute``, its copies run by the workers.

        ``settings`` are the other :class:`leap.MethodSettings` fields, passed on as they
        are; ``n_jobs`` caps the cluster's parallel tasks (default: all its workers).
        """
        import joblib

        if not hasattr(X, "iloc"):
            # The same validation as the local method, done here so the array that reaches
            # the tasks is this very object, which joblib then ships to each worker once.
            X = check_array(X, ensure_all_finite="allow-nan", dtype=None)
        permutation = get_engine().methods.get("permutation")
        with _client(scheduler_address(self.scheduler), self.timeout) as client:
            _wait_for_a_worker(client, self.timeout)
            with joblib.parallel_config(
                backend="dask",
                n_jobs=n_jobs if n_jobs is not None and n_jobs > 1 else -1,
                client=client,
                scatter=[X, estimator],
                wait_for_workers_timeout=self.timeout,
            ):
                return permutation.compute(estimator, X, y, groups=groups, n_jobs=None, **settings)


def _wait_for_a_worker(client: Any, timeout: float) -> None:
    import asyncio

    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, asyncio.TimeoutError):
        address = client.scheduler.address
        raise PluginError(
            f"the Dask cluster at {address} has no workers (waited {timeout:g} s); "
            f"start some with: dask worker {address}"
        ) from None


@contextmanager
def _client(address: str | None, timeout: float) -> Iterator[Any]:
    from distributed import Client, default_client

    if address is None:
        try:
            current = default_client()
        except ValueError:
            raise PluginError(
                f"method 'dask' needs a Dask scheduler: pass --scheduler tcp://HOST:8786, set "
                f"{SCHEDULER_ENV}, or open a distributed.Client before the analysis"
            ) from None
        yield current  # the caller's client: theirs to close
        return
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PluginError(
            f"cannot reach the Dask scheduler at {address}: {one_line(exc)}"
        ) from None
    with client:
        yield client


def _route(
    scheduler: str | None, method: str | None, config_file: Path | None
) -> tuple[str | None, str | None]:
    """For ``leap analyze``: the scheduler address, and the method to use instead (or None)."""
    file_method = file_scheduler = None
    if config_file is not None:
        try:
            data = read_settings(config_file, "config file")
        except LeapError:
            data = {}  # the core reports an unreadable config file itself
        analysis = data.get("analysis", data)
        file_method = analysis.get("method") if isinstance(analysis, dict) else None
        dask_table = data.get("dask", {})
        file_scheduler = dask_table.get("scheduler") if isinstance(dask_table, dict) else None
    address = scheduler_address(scheduler or file_scheduler)
    effective = method or file_method or "permutation"
    if scheduler and effective not in ("permutation", "dask"):
        import click

        raise click.UsageError(
            f"--scheduler runs the permutation method on Dask; it cannot run --method {effective}"
        )
    if address and effective == "permutation":
        return address, "dask"
    return address, None


@hookimpl
def register_methods(register):
    register(DaskMethod())


def _wrap_analyze(original: Any) -> Any:
    """``leap analyze``'s callback, routed to the Dask method when a scheduler is given."""

    @functools.wraps(original)
    def callback(*args: Any, scheduler: str | None = None, **kwargs: Any) -> Any:
        address, method = _route(scheduler, kwargs.get("method"), kwargs.get("config_file"))
        if method is not None:
            kwargs["method"] = method
        with use_scheduler(address):
            return original(*args, **kwargs)

    return callback


@hookimpl
def register_commands(cli: Any) -> None:
    import click

    option = click.Option(
        ["--scheduler"],
        metavar="ADDRESS",
        help=(
            "Permute on the Dask cluster at ADDRESS (tcp://host:8786); default: "
            f"${SCHEDULER_ENV} or [dask] scheduler in --config.  [leap-dask]"
        ),
    )
    cli.extend("analyze", params=[option], wrap=_wrap_analyze)
