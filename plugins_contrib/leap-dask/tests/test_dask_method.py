"""leap-dask: permutation importance on a Dask LocalCluster (loopback only) equals the local run,
selected by method name, --scheduler, the [dask] config table or LEAP_DASK_SCHEDULER."""

from __future__ import annotations

import socket

import joblib
import leap_dask
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster, get_task_stream
from leap_dask import SCHEDULER_ENV, DaskMethod, use_scheduler
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import leap.cli
from leap import Engine, SensorLayout
from leap.errors import PluginError
from leap.workflows.demo import make_leap_dataset

LAYOUT = SensorLayout.create(("Left_Ankle", "Right_Ankle", "Sacrum"), ("x_acc", "y_acc"))
PLANTED = (LAYOUT.feature_names[2], LAYOUT.feature_names[11])
OPTIONS = {"scoring": None, "n_repeats": 3, "random_state": 5, "sample_weight": None}
OPTIONS |= {"max_samples": 1.0, "n_jobs": None, "progress": False}
PERMUTATION = Engine(load_entry_points=False).methods.get("permutation")


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield local


@pytest.fixture(scope="module")
def data():
    return make_leap_dataset(6, 20, layout=LAYOUT, planted=PLANTED, random_state=2)


@pytest.fixture(autouse=True)
def _no_scheduler_in_environment(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)


def _tasks_run_on(cluster, call):
    """Run ``call`` and return (its value, how many tasks the cluster ran meanwhile)."""
    with Client(cluster.scheduler_address) as watcher, get_task_stream(client=watcher) as stream:
        value = call()
    return value, len(stream.data)


@pytest.mark.parametrize("grouped", [False, True])
def test_cluster_run_equals_local_run(cluster, data, grouped):
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(data.X, data.y)
    groups = [[0, 1], [2], list(range(3, LAYOUT.n_features))] if grouped else None
    scoring = ["accuracy", "neg_log_loss"]
    local = PERMUTATION.compute(
        model, data.X, data.y, groups=groups, **{**OPTIONS, "scoring": scoring}
    )
    remote, n_tasks = _tasks_run_on(
        cluster,
        lambda: DaskMethod(scheduler=cluster.scheduler_address).compute(
            model, data.X, data.y, groups=groups, **{**OPTIONS, "scoring": scoring}
        ),
    )
    assert n_tasks > 0, "nothing ran on the cluster"
    assert set(remote) == set(local) == set(scoring)
    for metric in scoring:
        assert remote[metric].baseline == local[metric].baseline
        np.testing.assert_allclose(
            remote[metric].importances, local[metric].importances, rtol=0, atol=1e-12
        )


def test_found_through_use_scheduler_environment_and_open_client(cluster, data, monkeypatch):
    model = LogisticRegression().fit(data.X, data.y)
    local = PERMUTATION.compute(model, data.X, data.y, groups=None, **OPTIONS)
    engine = Engine()
    with use_scheduler(cluster.scheduler_address):
        by_context = engine.compute(model, data.X, data.y, method="dask", layout=LAYOUT, **OPTIONS)
    monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
    by_env = engine.methods.get("dask").compute(model, data.X, data.y, groups=None, **OPTIONS)
    monkeypatch.delenv(SCHEDULER_ENV)
    with Client(cluster.scheduler_address):
        by_client = DaskMethod().compute(model, data.X, data.y, groups=None, **OPTIONS)
    expected = local["score"].importances
    np.testing.assert_allclose(by_context.importances, expected, rtol=0, atol=1e-12)
    assert by_context.method == "dask"  # Engine.compute: one result for one metric
    np.testing.assert_allclose(by_env["score"].importances, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(by_client["score"].importances, expected, rtol=0, atol=1e-12)


def test_without_a_reachable_scheduler_the_error_says_what_to_do(data):
    model = LogisticRegression().fit(data.X, data.y)
    with pytest.raises(PluginError, match=f"--scheduler tcp://HOST:8786, set {SCHEDULER_ENV}"):
        DaskMethod().compute(model, data.X, data.y, groups=None, **OPTIONS)
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(PluginError, match=f"cannot reach the Dask scheduler at {closed}"):
        DaskMethod(scheduler=closed, timeout=0.5).compute(
            model, data.X, data.y, groups=None, **OPTIONS
        )


def test_a_cluster_without_workers_is_reported(data):
    model = LogisticRegression().fit(data.X, data.y)
    with LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as empty:
        with pytest.raises(PluginError, match="has no workers"):
            DaskMethod(scheduler=empty.scheduler_address, timeout=0.5).compute(
                model, data.X, data.y, groups=None, **OPTIONS
            )


@pytest.fixture
def cli_with_dask():
    """The ``leap`` command of an engine with leap-dask: its analyze gains --scheduler once,
    in a copy (the built-in command object is untouched)."""
    engine = leap.Engine(load_entry_points=False, plugins=[leap_dask])
    analyze = engine.commands.get("analyze")
    assert [p.name for p in analyze.params].count("scheduler") == 1
    builtin = leap.Engine(load_entry_points=False).commands.get("analyze")
    assert "scheduler" not in [p.name for p in builtin.params]
    group = leap.cli.LeapGroup("leap")
    engine.add_commands(group)
    return group


def test_cli_scheduler_option_config_table_and_environment(
    cluster, data, tmp_path, cli_with_dask, monkeypatch
):
    model = LogisticRegression().fit(data.X, data.y)
    joblib.dump(model, tmp_path / "model.pkl")
    np.savez(tmp_path / "features.npz", X=data.X, y=data.y)
    common = ["--sensors", ",".join(LAYOUT.sensors), "--dims", ",".join(LAYOUT.dims)]
    common += ["--n-repeats", "3", "--random-state", "5", "--top", "1"]
    runner = CliRunner()

    def analyze(*extra: str) -> tuple[str, pd.DataFrame]:
        out = tmp_path / f"run{len(list(tmp_path.glob('*.csv')))}.csv"
        args = ["analyze", "model.pkl", "features.npz", "-o", str(out), *common, *extra]
        result = runner.invoke(cli_with_dask, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output, pd.read_csv(out)

    monkeypatch.chdir(tmp_path)
    local_output, local = analyze()
    assert "permutation" in local_output
    address = cluster.scheduler_address
    (tmp_path / "leap.toml").write_text(
        f'[analysis]\nmodel_path = "model.pkl"\nfeature_matrix = "features.npz"\n\n'
        f'[dask]\nscheduler = "{address}"\n',
        encoding="utf-8",
    )
    runs = [analyze("--scheduler", address), analyze("--config", "leap.toml")]
    monkeypatch.setenv(SCHEDULER_ENV, address)
    runs.append(analyze())
    for output, frame in runs:
        assert "dask)" in output  # the summary names the method that ran
        pd.testing.assert_frame_equal(frame, local)

    result = runner.invoke(
        cli_with_dask, ["analyze", "a.pkl", "b.npz", "--method", "shap", "--scheduler", address]
    )
    assert result.exit_code == 2 and "cannot run --method shap" in result.output


@pytest.mark.slow
def test_worker_processes_give_the_same_numbers(data):
    # Real serialisation: model and data travel to a worker process over loopback TCP.
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(data.X, data.y)
    local = PERMUTATION.compute(model, data.X, data.y, groups=None, **OPTIONS)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as processes:
        remote = DaskMethod(scheduler=processes.scheduler_address).compute(
            model, data.X, data.y, groups=None, **OPTIONS
        )
    np.testing.assert_allclose(
        remote["score"].importances, local["score"].importances, rtol=0, atol=1e-12
    )
