"""Shared fixtures: small LEAP-shaped data, fitted models, files on disk, fresh engines."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from leap import Engine, SensorLayout
from leap.builtins.methods.permutation._jit import numba_enabled
from leap.workflows.demo import DemoData, make_leap_dataset

SMALL_LAYOUT = SensorLayout(sensors=("Left_Ankle", "Right_Ankle", "Sacrum"), dims=("x", "y"))
SMALL_PLANTED = ("Left_Ankle.x|Right_Ankle.x", "Right_Ankle.y|Sacrum.x")


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch):
    """Tests see only the built-ins unless they opt in (installed plugins vary by machine)."""
    monkeypatch.setenv("LEAP_LOAD_PLUGINS", "")
    monkeypatch.setattr("leap.engine._default_engine", None)


@pytest.fixture
def chosen_path(monkeypatch):
    """Records which fast path (if any) each permutation ``compute`` call used."""
    import leap.builtins.methods.permutation.method as permutation

    seen = []
    original = permutation.run_all

    def spy(ctx, *args, **kwargs):
        seen.append(None if ctx.fast is None else type(ctx.fast))
        return original(ctx, *args, **kwargs)

    monkeypatch.setattr(permutation, "run_all", spy)
    return seen


@pytest.fixture(params=["numba", "numpy"])
def kernels(request, monkeypatch):
    """Run a test with the compiled kernels and with their NumPy twins."""
    if request.param == "numpy":
        monkeypatch.setenv("LEAP_DISABLE_NUMBA", "1")
    elif not numba_enabled():
        pytest.skip("numba is not installed")
    return request.param


@pytest.fixture
def engine() -> Engine:
    """A fresh engine with the built-in plugins only."""
    return Engine(load_entry_points=False)


@pytest.fixture(scope="session")
def leap_data() -> DemoData:
    """Full LEAP layout (435 features), 8 participants × 15 windows."""
    return make_leap_dataset(n_participants=8, windows_per_participant=15, random_state=1)


@pytest.fixture(scope="session")
def small_data() -> DemoData:
    """3 sensors × 2 dims = 15 features, 120 rows."""
    return make_leap_dataset(
        n_participants=6,
        windows_per_participant=20,
        layout=SMALL_LAYOUT,
        planted=SMALL_PLANTED,
        random_state=2,
    )


@pytest.fixture(scope="session")
def leap_model() -> LogisticRegression:
    """Fitted on other participants than ``leap_data`` (the held-out set)."""
    train = make_leap_dataset(n_participants=20, windows_per_participant=30, random_state=3)
    return LogisticRegression(C=0.05, max_iter=2000).fit(train.X, train.y)


@pytest.fixture
def leap_files(tmp_path: Path, leap_data: DemoData, leap_model) -> dict[str, Path]:
    """model.pkl and features.npy (original LEAP layout, object array) in tmp_path."""
    model_path = tmp_path / "model.pkl"
    matrix_path = tmp_path / "features.npy"
    joblib.dump(leap_model, model_path)
    np.save(matrix_path, leap_data.to_leap_array(), allow_pickle=True)
    return {"model": model_path, "matrix": matrix_path, "dir": tmp_path}
