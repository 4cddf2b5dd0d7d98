"""leap-shap: mean |SHAP| per feature and group, with the explainer fitting the model, and a
result that goes through the same CSV and heatmap as the built-in method."""

from __future__ import annotations

import numpy as np
import pytest
from leap_shap import METRIC, ShapMethod, choose_explainer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from leap import Engine, ImportanceResult, SensorLayout, plot_sensor_pair_importance
from leap.workflows.demo import make_leap_dataset

LAYOUT = SensorLayout.create(("Left_Ankle", "Right_Ankle", "Sacrum"), ("x_acc", "y_acc"))
PLANTED = (LAYOUT.feature_names[1], LAYOUT.feature_names[13])


@pytest.fixture(scope="module")
def data():
    return make_leap_dataset(6, 20, layout=LAYOUT, planted=PLANTED, random_state=1)


def _compute(estimator, X, y, **kwargs):
    kwargs = {"groups": None, "random_state": 0, "n_repeats": 1, **kwargs}
    return ShapMethod().compute(estimator, X, y, **kwargs)


def test_linear_model_equals_closed_form(data):
    # For a linear model with independent features, SHAP value = coef * (x - background mean).
    X = data.X[:40]  # fewer rows than the background size: the background is all of X
    model = LinearRegression().fit(data.X, data.X @ np.arange(LAYOUT.n_features))
    assert choose_explainer(model, X)[0] == "linear"
    scores = _compute(model, X, None)[METRIC]
    expected = np.abs(model.coef_ * (X - X.mean(axis=0))).mean(axis=0)
    assert scores.baseline is None and scores.importances.shape == (LAYOUT.n_features, 1)
    assert scores.importances.dtype == np.float64
    np.testing.assert_allclose(scores.importances[:, 0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.slow  # the first model-agnostic explanation compiles shap's numba kernels (~5-10 s)
def test_model_agnostic_explainer_is_exact_for_an_additive_model(data):
    X = data.X[:30]
    model = make_pipeline(StandardScaler(), LinearRegression())
    model.fit(data.X, data.X @ np.linspace(-1, 1, LAYOUT.n_features))
    assert choose_explainer(model, X)[0] == "permutation"
    scores = _compute(model, X, None, n_repeats=1)[METRIC]
    coef = model[-1].coef_ / model[0].scale_
    expected = np.abs(coef * (X - X.mean(axis=0))).mean(axis=0)
    np.testing.assert_allclose(scores.importances[:, 0], expected, rtol=1e-7, atol=1e-10)


def test_groups_sum_member_importances_and_weights_and_rows_apply(data):
    model = LogisticRegression().fit(data.X, data.y)
    groups = [[0, 1, 2], [13], [*range(3, 13), 14]]
    single = _compute(model, data.X, data.y)[METRIC].importances[:, 0]
    grouped = _compute(model, data.X, data.y, groups=groups)[METRIC].importances[:, 0]
    np.testing.assert_allclose(grouped, [single[g].sum() for g in groups], rtol=1e-12)

    weights = np.zeros(len(data.y))
    weights[:10] = 1.0  # only the first ten rows count
    weighted = _compute(model, data.X, data.y, sample_weight=weights)[METRIC].importances
    # the background (the mean of the sample) differs, so compare against that directly
    coef = model.coef_[0]
    background = data.X[np.sort(np.random.RandomState(0).permutation(len(data.y))[:50])]
    np.testing.assert_allclose(
        weighted[:, 0], np.abs(coef * (data.X[:10] - background.mean(axis=0))).mean(axis=0)
    )
    subset = _compute(model, data.X, data.y, max_samples=25)[METRIC].importances
    assert subset.shape == (LAYOUT.n_features, 1) and not np.allclose(subset, single[:, None])


def test_tree_model_through_engine_csv_and_heatmap(tmp_path, data):
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(data.X, data.y)
    assert choose_explainer(model, data.X)[0] == "tree"
    engine = Engine()
    (result,) = engine.compute(
        model, data.X, data.y, method="shap", layout=LAYOUT, random_state=0
    ).values()
    assert result.method == "shap" and result.scoring == METRIC
    assert result.baseline_score is None and result.importances.shape == (LAYOUT.n_features, 1)
    top_two = {result.feature_names[i] for i in np.argsort(-result.importances_mean)[:2]}
    assert top_two == set(PLANTED)

    csv = result.to_csv(tmp_path / "shap.csv")
    back = ImportanceResult.from_csv(csv)
    np.testing.assert_allclose(back.importances, result.importances, rtol=0, atol=0)
    png = tmp_path / "shap.png"
    figure = plot_sensor_pair_importance(csv, "Mean |SHAP| by sensor pair", png, engine=engine)
    assert png.stat().st_size > 5_000
    matrix = back.sensor_matrix()
    assert matrix.loc["Left_Ankle", "Left_Ankle"] == pytest.approx(
        result.importances_mean[[0]].sum()  # Left_Ankle.x_acc|Left_Ankle.y_acc
    )
    assert figure.axes[0].get_title() == "Mean |SHAP| by sensor pair"
