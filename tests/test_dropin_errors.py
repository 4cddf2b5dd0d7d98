"""The exact drop-in, errors included: for invalid arguments, leap.permutation_importance raises
the exception scikit-learn's permutation_importance raises, of the same type and with the same
message, so code and tests written against scikit-learn keep working."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

import leap

RNG = np.random.RandomState(0)
X = RNG.normal(size=(60, 4))
Y = (X[:, 0] + 0.3 * RNG.normal(size=60) > 0).astype(int)
MODEL = LogisticRegression().fit(X, Y)
TREE = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, Y)
NO_PROBA = LinearSVC().fit(X, Y)


class NoFit:
    """Predicts, but has no fit(): scikit-learn refuses it as an estimator."""

    def predict(self, X):
        return np.zeros(len(X), dtype=int)


# name -> keyword changes to a valid call (estimator, X, y, n_repeats=2, random_state=0)
INVALID = {
    "n_repeats=0": {"n_repeats": 0},
    "n_repeats=-3": {"n_repeats": -3},
    "n_repeats=2.5": {"n_repeats": 2.5},
    "n_repeats='5'": {"n_repeats": "5"},
    "n_repeats=None": {"n_repeats": None},
    "max_samples=0": {"max_samples": 0},
    "max_samples=0.0": {"max_samples": 0.0},
    "max_samples=1.5": {"max_samples": 1.5},
    "max_samples=-0.2": {"max_samples": -0.2},
    "max_samples=61 (> n_samples)": {"max_samples": 61},
    "max_samples=10**6": {"max_samples": 10**6},
    "max_samples='all'": {"max_samples": "all"},
    "max_samples=None": {"max_samples": None},
    "scoring='acc' (typo)": {"scoring": "acc"},
    "scoring=3": {"scoring": 3},
    "scoring=['accuracy', 'nope']": {"scoring": ["accuracy", "nope"]},
    "scoring=['accuracy', 'accuracy']": {"scoring": ["accuracy", "accuracy"]},
    "scoring=[] (empty)": {"scoring": []},
    "scoring={} (empty)": {"scoring": {}},
    "scoring=('accuracy', 3)": {"scoring": ("accuracy", 3)},
    "scoring=regression metric on labels": {"scoring": "r2", "y": np.array(["a", "b"] * 30)},
    "n_jobs=1.5": {"n_jobs": 1.5},
    "n_jobs='2'": {"n_jobs": "2"},
    "random_state='seed'": {"random_state": "seed"},
    "random_state=1.5": {"random_state": 1.5},
    "estimator without fit": {"estimator": NoFit()},
    "X a scalar": {"X": 3.0},
    "X 1-D": {"X": X[:, 0]},
    "X 3-D": {"X": X.reshape(60, 2, 2)},
    "X with no rows": {"X": X[:0], "y": Y[:0]},
    "X with infinities": {"X": np.where(X > 1.5, np.inf, X)},
    "y a scalar": {"y": 1},
    "y shorter than X": {"y": Y[:-1]},
    "y longer than X": {"y": np.concatenate([Y, Y[:5]])},
    "y shorter than X, max_samples=0.5": {"y": Y[:-1], "max_samples": 0.5},
    "y None": {"y": None},
    "sample_weight a scalar": {"sample_weight": 2.0},
    "sample_weight shorter than X": {"sample_weight": np.ones(59)},
    "features in X differ from the fit": {"X": X[:, :3]},
    "float max_samples giving no rows": {"max_samples": 0.001},
    "DataFrame X, y shorter": {"X": pd.DataFrame(X), "y": Y[:-2]},
    "scoring={1: callable} (non-string key)": {"scoring": {1: lambda est, X, y: 0.0}},
    "sample_weight shorter, max_samples=0.5": {"sample_weight": np.ones(59), "max_samples": 0.5},
    "y with NaN": {"y": np.where(np.arange(60) == 3, np.nan, Y)},
    "scoring needing predict_proba of a model without it": {
        "estimator": NO_PROBA,
        "scoring": "neg_log_loss",
    },
}


def _outcome(function, **kwargs):
    arguments = {"estimator": MODEL, "X": X, "y": Y, "n_repeats": 2, "random_state": 0}
    arguments.update(kwargs)
    estimator, data, target = (arguments.pop(k) for k in ("estimator", "X", "y"))
    try:
        function(estimator, data, target, **arguments)
    except Exception as exc:  # the point is to compare whatever is raised
        return exc
    return None


@pytest.mark.parametrize("kwargs", INVALID.values(), ids=INVALID.keys())
def test_invalid_arguments_raise_what_scikit_learn_raises(kwargs):
    expected = _outcome(sk_permutation_importance, **kwargs)
    assert expected is not None, "scikit-learn accepts this: not an invalid argument"
    got = _outcome(leap.permutation_importance, **kwargs)
    assert got is not None, f"LEAP accepted what scikit-learn refuses: {expected!r}"
    assert type(got) is type(expected)
    assert str(got) == str(expected)
    # the same handlers catch it: InvalidParameterError is both a ValueError and a TypeError
    assert isinstance(got, ValueError) == isinstance(expected, ValueError)
    assert isinstance(got, TypeError) == isinstance(expected, TypeError)


def test_the_tree_fast_path_does_not_change_the_errors():
    for kwargs in ({"y": Y[:-1]}, {"max_samples": 61}, {"X": X[:, :3]}):
        kwargs = {**kwargs, "estimator": TREE}
        expected = _outcome(sk_permutation_importance, **kwargs)
        got = _outcome(leap.permutation_importance, **kwargs)
        assert (type(got), str(got)) == (type(expected), str(expected))


def test_the_message_names_the_parameter_and_the_accepted_values():
    with pytest.raises(ValueError, match=re.escape("'max_samples' parameter of permutation_")):
        leap.permutation_importance(MODEL, X, Y, max_samples=1.5)
    with pytest.raises(TypeError, match=re.escape("'n_repeats' parameter")):
        leap.permutation_importance(MODEL, X, Y, n_repeats=0)


@pytest.mark.parametrize("kwargs", [{"max_samples": 60}, {"max_samples": 1.0}, {"n_jobs": None}])
def test_valid_boundary_values_are_accepted_and_equal_scikit_learn(kwargs):
    ref = sk_permutation_importance(MODEL, X, Y, n_repeats=3, random_state=1, **kwargs)
    got = leap.permutation_importance(MODEL, X, Y, n_repeats=3, random_state=1, **kwargs)
    np.testing.assert_allclose(got.importances, ref.importances, rtol=0, atol=1e-12)


def test_skipping_parameter_validation_is_honoured_like_scikit_learn():
    # With validation skipped, scikit-learn's own later check speaks; so does LEAP's.
    with sklearn.config_context(skip_parameter_validation=True):
        expected = _outcome(sk_permutation_importance, max_samples=61)
        got = _outcome(leap.permutation_importance, max_samples=61)
    assert (type(got), str(got)) == (type(expected), str(expected))
    assert str(got) == "max_samples must be <= n_samples"
