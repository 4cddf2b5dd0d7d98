"""Inference over held-out rows: per-row shares, one-sided tests, BH q-values, FDR control."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.datasets import make_classification, make_regression
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier

from leap.builtins.methods.permutation.method import PermutationMethod
from leap.data.result import ImportanceResult
from leap.data.stats import bh_qvalues, one_sided_test, t_test, unit_means, unit_moments


def _result(scores, names=None):
    names = names or [f"x{i}" for i in range(scores.importances.shape[0])]
    result = ImportanceResult(scores.importances, names, measurable=scores.measurable)
    return result.add_moments(scores.unit_moments)


# -- the statistics themselves ------------------------------------------------------------
def test_bh_qvalues_equal_scipy_and_skip_nan():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=40) ** 3
    np.testing.assert_allclose(
        bh_qvalues(p), stats.false_discovery_control(p, method="bh"), rtol=0, atol=1e-12
    )
    with_nan = np.concatenate([p[:10], [np.nan, np.nan]])
    q = bh_qvalues(with_nan)
    assert np.isnan(q[10:]).all()  # unmeasurable rows are not counted in m
    np.testing.assert_allclose(
        q[:10], stats.false_discovery_control(p[:10], method="bh"), rtol=0, atol=1e-12
    )
    assert np.isnan(bh_qvalues([np.nan])).all()


def test_one_sided_test_equals_scipy_ttest():
    rng = np.random.default_rng(1)
    values = rng.normal(0.1, 1.0, size=(5, 60))
    found = one_sided_test(values)
    expected = stats.ttest_1samp(values, 0.0, axis=1, alternative="greater")
    np.testing.assert_allclose(found.p_value, expected.pvalue, rtol=0, atol=1e-12)
    low, high = found.interval(0.9)
    ci = expected.confidence_interval(0.9)  # one-sided: (low, inf); check the two-sided
    two = stats.ttest_1samp(values, 0.0, axis=1).confidence_interval(0.9)
    np.testing.assert_allclose(low, two.low, rtol=0, atol=1e-12)
    np.testing.assert_allclose(high, two.high, rtol=0, atol=1e-12)
    assert np.all(ci.high == np.inf)


def test_flat_rows_and_unmeasurable_rows():
    values = np.array([[0.0] * 5, [0.2] * 5, [0.0, 1.0, -1.0, 0.5, 0.5]])
    found = one_sided_test(values, measurable=[True, True, False])
    assert found.p_value[0] == 1.0  # nothing changed: no evidence
    assert found.p_value[1] == 0.0  # the same positive change on every row
    assert np.isnan(found.p_value[2])


def test_participants_are_the_units_when_given():
    d = np.array([[1.0, 3.0, 2.0, 2.0, 5.0, 7.0]])
    ids = np.array(["a", "a", "b", "b", "c", "c"])
    values, unit = unit_means(d, ids)
    assert unit == "participant"
    np.testing.assert_array_equal(values, [[2.0, 2.0, 6.0]])
    w = np.array([1.0, 3.0, 1.0, 1.0, 1.0, 1.0])
    values, _ = unit_means(d, ids, w)
    np.testing.assert_allclose(values, [[2.5, 2.0, 6.0]], rtol=0, atol=1e-12)
    inference = t_test(unit_moments(d, participants=ids))
    assert (inference.unit, inference.n_units, inference.df) == ("participant", 3, 2)
    single = t_test(unit_moments(d, participants=np.array(["a"] * 6)))  # one: over rows
    assert (single.unit, single.n_units) == ("row", 6)


def test_weighted_rows_have_the_weighted_mean():
    rng = np.random.default_rng(2)
    d = rng.normal(size=(3, 50))
    w = rng.uniform(0.5, 2.0, size=50)
    values, unit = unit_means(d, None, w)
    assert unit == "row"
    np.testing.assert_allclose(values.mean(axis=1), np.average(d, axis=1, weights=w), atol=1e-12)


# -- per-row shares from the permutation method --------------------------------------------
@pytest.mark.parametrize("scoring", [None, "accuracy", "balanced_accuracy"])
@pytest.mark.parametrize("weighted", [False, True])
def test_row_differences_average_to_the_importance_classification(scoring, weighted):
    X, y = make_classification(200, 5, n_informative=3, random_state=0)
    X[:, 4] = 2.5  # constant: unmeasurable
    w = np.random.default_rng(0).uniform(0.5, 2.0, 200) if weighted else None
    for model in (LogisticRegression().fit(X, y), DecisionTreeClassifier(random_state=0).fit(X, y)):
        (scores,) = (
            PermutationMethod(keep_row_differences=True)
            .compute(model, X, y, scoring=scoring, n_repeats=4, random_state=3, sample_weight=w)
            .values()
        )
        ref = permutation_importance(
            model, X, y, scoring=scoring, n_repeats=4, random_state=3, sample_weight=w
        )
        np.testing.assert_allclose(scores.importances, ref.importances, rtol=0, atol=1e-12)
        mean = np.average(scores.row_differences, axis=1, weights=w)
        np.testing.assert_allclose(mean, scores.importances.mean(axis=1), rtol=0, atol=1e-12)
        assert list(scores.measurable) == [True] * 4 + [False]


@pytest.mark.parametrize(
    "scoring", [None, "r2", "neg_mean_squared_error", "neg_mean_absolute_error"]
)
def test_row_differences_average_to_the_importance_regression(scoring):
    X, y = make_regression(150, 4, random_state=1)
    model = Ridge().fit(X, y)
    (scores,) = (
        PermutationMethod(keep_row_differences=True)
        .compute(model, X, y, scoring=scoring, n_repeats=3, random_state=0)
        .values()
    )
    mean = scores.row_differences.mean(axis=1)
    np.testing.assert_allclose(mean, scores.importances.mean(axis=1), rtol=0, atol=1e-9)


def test_scorers_that_are_not_a_mean_over_rows_give_no_p_value():
    X, y = make_classification(120, 4, random_state=0)
    model = LogisticRegression().fit(X, y)
    for scoring in ("roc_auc", "f1", ["accuracy", "roc_auc"]):
        for scores in (
            PermutationMethod()
            .compute(model, X, y, scoring=scoring, n_repeats=2, random_state=0)
            .values()
        ):
            assert scores.row_differences is None and scores.unit_moments is None


def test_max_samples_rows_are_reported():
    X, y = make_classification(100, 3, n_informative=2, n_redundant=0, random_state=0)
    model = LogisticRegression().fit(X, y)
    (scores,) = (
        PermutationMethod(keep_row_differences=True)
        .compute(model, X, y, n_repeats=2, random_state=0, max_samples=40)
        .values()
    )
    assert scores.rows.shape == (40,) and scores.row_differences.shape == (3, 40)
    assert scores.unit_moments.mean.shape == (3,) and scores.unit_moments.n_units == 40


@pytest.mark.parametrize(
    "scoring", ["accuracy", "balanced_accuracy", "r2", "neg_mean_absolute_error"]
)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_ids", [False, True])
def test_moments_without_the_table_equal_those_of_the_table(scoring, weighted, with_ids):
    # The default run keeps no (groups x rows) table: the moments it reduces each group to
    # as it completes must be the table's, bitwise, with weights, participants, max_samples.
    rng = np.random.default_rng(4)
    if scoring == "r2":
        X, y = make_regression(180, 7, random_state=2)
        model = Ridge().fit(X, y)
    else:
        X, y = make_classification(180, 7, n_informative=3, random_state=2)
        model = LogisticRegression().fit(X, y)
    X[:, 6] = 1.0  # a constant column: its group is answered without a copy
    w = rng.uniform(0.2, 3.0, 180) if weighted else None
    ids = rng.choice(["P1", "P2", "P3", "P4"], 180) if with_ids else None
    common = dict(scoring=scoring, n_repeats=3, random_state=1, sample_weight=w, max_samples=150)
    (lean,) = PermutationMethod().compute(model, X, y, participants=ids, **common).values()
    (full,) = (
        PermutationMethod(keep_row_differences=True)
        .compute(model, X, y, participants=ids, **common)
        .values()
    )
    assert lean.row_differences is None and full.row_differences.shape == (7, 150)
    used = None if ids is None else ids[full.rows]
    w_used = None if w is None else w[full.rows]
    expected = unit_moments(full.row_differences, used, w_used)
    for found in (lean.unit_moments, full.unit_moments):
        np.testing.assert_array_equal(found.mean, expected.mean)
        np.testing.assert_array_equal(found.sd, expected.sd)
        assert (found.unit, found.n_units) == (expected.unit, expected.n_units)
    assert expected.unit == ("participant" if with_ids else "row")
    if not with_ids:  # over rows, the mean is the importance
        mean = np.average(full.row_differences, axis=1, weights=w_used)
        np.testing.assert_allclose(expected.mean, mean, rtol=0, atol=1e-12)


def test_participant_ids_of_the_wrong_length_are_refused():
    from leap.errors import LeapError

    X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    model = LogisticRegression().fit(X, y)
    with pytest.raises(LeapError, match="59 participant ids for the 60 rows"):
        PermutationMethod().compute(model, X, y, n_repeats=2, participants=["a"] * 59)


# -- the result --------------------------------------------------------------------------
def test_result_p_q_measurable_round_trip(tmp_path):
    X, y = make_classification(300, 6, n_informative=2, n_redundant=0, random_state=0)
    X[:, 5] = 0.0
    model = LogisticRegression().fit(X[:150], y[:150])
    (scores,) = (
        PermutationMethod().compute(model, X[150:], y[150:], n_repeats=5, random_state=0).values()
    )
    result = _result(scores)
    assert np.isnan(result.p_value[5]) and np.isnan(result.q_value[5])
    assert not result.is_measurable[5]
    assert result.ranks[5] == 6  # after every measurable row
    assert "x5" not in set(result.top(10)["feature"])
    assert not result.discoveries()[5]
    finite = ~np.isnan(result.p_value)
    np.testing.assert_allclose(
        result.q_value[finite],
        stats.false_discovery_control(result.p_value[finite]),
        rtol=0,
        atol=1e-12,
    )
    low, high = result.confidence_interval()
    assert np.all(low[finite] <= result.importances_mean[finite] + 1e-12)
    assert np.all(high[finite] >= result.importances_mean[finite] - 1e-12)
    assert result.params["inference"] == {"test": "one-sided t", "unit": "row", "n_units": 150}

    path = result.to_csv(tmp_path / "r.csv")
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    assert frame.loc[5, "rank"] == "" and frame.loc[5, "p_value"] == ""
    assert frame.loc[5, "measurable"] == "False"
    back = ImportanceResult.from_csv(path)
    np.testing.assert_array_equal(back.p_value, result.p_value)
    np.testing.assert_array_equal(back.q_value, result.q_value)
    np.testing.assert_array_equal(back.measurable, result.measurable)
    np.testing.assert_array_equal(back.ci_low, result.ci_low)


def test_older_csv_without_test_columns_reads(tmp_path):
    result = ImportanceResult(np.array([[0.2, 0.3], [0.0, 0.1]]), ["a", "b"])
    frame = result.to_frame().drop(columns=["p_value", "q_value", "measurable"])
    frame.to_csv(tmp_path / "old.csv", index=False)
    back = ImportanceResult.from_csv(tmp_path / "old.csv")
    assert back.p_value is None and back.q_value is None and back.is_measurable.all()
    assert not back.discoveries().any()


# -- validity: FDR over repeated simulations ------------------------------------------------
def _simulate(seed, n=400, n_signal=3, n_null=17):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_signal + n_null))
    logit = X[:, :n_signal] @ np.full(n_signal, 1.2)
    y = (logit + rng.logistic(size=n) > 0).astype(int)
    half = n // 2
    model = LogisticRegression(C=10.0).fit(X[:half], y[:half])
    (scores,) = (
        PermutationMethod()
        .compute(model, X[half:], y[half:], n_repeats=5, random_state=seed)
        .values()
    )
    return _result(scores), n_signal


def test_nulls_are_flagged_at_no_more_than_the_nominal_fdr():
    alpha = 0.1
    fdp, power = [], []
    for seed in range(30):
        result, n_signal = _simulate(seed)
        found = result.q_value <= alpha
        n_found = int(found.sum())
        false = int(found[n_signal:].sum())
        fdp.append(false / max(n_found, 1))
        power.append(found[:n_signal].mean())
    # The average false discovery proportion estimates the FDR (30 runs: its standard
    # error is about 0.03 here), and most planted features are found (200 held-out rows).
    assert np.mean(fdp) <= alpha + 0.03
    assert np.mean(power) >= 0.75


def test_null_p_values_are_not_small_too_often():
    p_null = np.concatenate([_simulate(seed)[0].p_value[3:] for seed in range(12)])
    # Under the null the one-sided p-value is (at least) uniform: few fall below 0.05.
    assert np.mean(p_null <= 0.05) <= 0.05 + 0.03


def test_spread_from_pooled_differences():
    from leap.workflows.participants import spread_from_differences

    d = np.array([[1.0, 3.0, 2.0, 2.0, 5.0, 7.0], [0.0, 0.0, 1.0, -1.0, 0.0, 0.0]])
    ids = np.array(["P2", "P2", "P10", "P10", "P1", "P1"])
    spread = spread_from_differences(["a", "b"], d, ids)
    assert spread.participants == ["P1", "P10", "P2"]
    np.testing.assert_array_equal(spread.values, [[6.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    assert list(spread.n_samples) == [2, 2, 2]
    one = spread_from_differences(["a", "b"], d, np.array(["P1"] * 6))
    np.testing.assert_allclose(one.values[:, 0], d.mean(axis=1), rtol=0, atol=1e-12)


# -- what tables and figures show ----------------------------------------------------------
@pytest.fixture(scope="module")
def tested_demo():
    from leap.workflows.demo import make_leap_dataset

    data = make_leap_dataset(n_participants=12, windows_per_participant=30)
    held = np.isin(data.participants, np.unique(data.participants)[-6:])
    model = LogisticRegression(C=0.05, max_iter=2000).fit(data.X[~held], data.y[~held])
    X, y, ids = data.X[held], data.y[held], data.participants[held]
    (scores,) = (
        PermutationMethod()
        .compute(model, X, y, n_repeats=5, random_state=0, participants=ids)
        .values()
    )
    result = ImportanceResult.from_layout(
        scores.importances, data.layout, scoring="accuracy", measurable=scores.measurable
    )
    return result.add_moments(scores.unit_moments), data


def test_report_headline_counts_discoveries(tested_demo, tmp_path):
    import re

    import leap

    result, data = tested_demo
    page = leap.get_engine().render(result, tmp_path / "r.html", renderer="report", title="t")
    text = re.sub(r"<[^>]+>", " ", page)
    n = int(result.discoveries().sum())
    n_tested = int((~np.isnan(result.p_value)).sum())
    assert f"{n} of {n_tested} channel pairs are discoveries at q ≤ 0.05" in text
    assert "75 channel pairs are constant over the data" in text
    assert result.params["inference"]["unit"] == "participant"
    assert set(np.array(result.feature_names)[result.discoveries()]) <= set(data.planted)


def test_heatmaps_hatch_unmeasurable_cells(tested_demo, tmp_path):
    import leap
    from leap.builtins.renderers.heatmap import UNMEASURABLE_LABEL

    result, _ = tested_demo
    engine = leap.get_engine()
    fig = engine.render(result, tmp_path / "h.png", renderer="heatmap", title="")
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch() == "///"]
    assert len(hatched) == 5  # the five within-sensor cells
    assert ax.get_legend().get_texts()[0].get_text() == UNMEASURABLE_LABEL
    assert np.isnan(result.sensor_matrix().to_numpy().diagonal()).all()
    fig = engine.render(result, tmp_path / "c.png", renderer="channel_heatmap", title="")
    hatched = [p for p in fig.axes[0].patches if p.get_hatch() == "///"]
    assert len(hatched) == 2 * 75  # each unmeasurable pair, both triangles
    assert (tmp_path / "h.png").stat().st_size > 10_000


def test_a_method_handing_over_its_table_is_tested_as_the_built_in():
    """A plugin method without the ``participants`` option returns per-row differences;
    the engine forms the participants' means from them. Its p-values equal those of the
    built-in method, which gets the ids and keeps only the moments."""
    from leap import Engine, hookimpl
    from leap.components import MethodScores

    class Tabled:
        name = "tabled"

        def compute(self, estimator, X, y, **options):
            found = PermutationMethod(keep_row_differences=True).compute(estimator, X, y, **options)
            return {
                metric: MethodScores(s.baseline, s.importances, s.row_differences, s.rows)
                for metric, s in found.items()
            }

    class Plugin:
        @staticmethod
        @hookimpl
        def register_methods(register):
            register(Tabled())

    X, y = make_classification(160, 6, n_informative=3, random_state=5)
    model = LogisticRegression().fit(X, y)
    ids = np.repeat([f"P{i}" for i in range(8)], 20)
    engine = Engine()
    engine.register(Plugin)
    common = dict(n_repeats=3, random_state=0, participants=ids, max_samples=120)
    built_in = engine.compute(model, X, y, method="permutation", **common)
    tabled = engine.compute(model, X, y, method="tabled", **common)
    assert built_in.inference.unit == tabled.inference.unit == "participant"
    np.testing.assert_array_equal(built_in.p_value, tabled.p_value)
    np.testing.assert_array_equal(built_in.inference.se, tabled.inference.se)
