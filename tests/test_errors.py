"""The catalogue of bad inputs: every row gives one actionable line, the same through the API
(a LeapError subclass) and the CLI (exit status 2, one line on stderr, no traceback)."""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

from leap import SensorLayout, analyze_permutation_importance
from leap.cli import cli
from leap.data.files import sha256_of
from leap.errors import (
    ConfigError,
    InputFileError,
    LayoutError,
    LeapError,
    MatrixError,
    ModelError,
)

LAYOUT = SensorLayout(sensors=("Left_Ankle", "Right_Ankle", "Sacrum"), dims=("x", "y"))
LAYOUT_ARGS = ["--sensors", "Left_Ankle,Right_Ankle,Sacrum", "--dims", "x,y"]
N_ROWS, N_FEATURES = 40, LAYOUT.n_features  # 15 channel pairs
LEAP_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Files:
    """Tiny valid inputs in a temporary folder, from which each bad case is made."""

    dir: Path
    X: np.ndarray
    y: np.ndarray
    model: Path
    matrix: Path
    csv: Path
    monkeypatch: pytest.MonkeyPatch

    def npy(self, name: str, X: np.ndarray, y: np.ndarray) -> Path:
        path = self.dir / name
        np.save(path, np.column_stack([X, y]))
        return path

    def csv_of(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.dir / name
        frame.to_csv(path, index=False)
        return path

    def pickle(self, name: str, obj: Any) -> Path:
        path = self.dir / name
        joblib.dump(obj, path)
        return path


@dataclass
class Case:
    """One row of the catalogue: the inputs, the error class and the message pattern."""

    error: type[LeapError]
    message: str
    model: Path | None = None
    matrix: Path | None = None
    api: Callable[[], dict[str, Any]] = dict
    cli: list[str] = field(default_factory=list)


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Files:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N_ROWS, N_FEATURES))
    y = (X[:, 0] + 0.3 * rng.normal(size=N_ROWS) > 0).astype(np.int64)
    frame = pd.DataFrame(X, columns=LAYOUT.feature_names).assign(label=y)
    files = Files(
        dir=tmp_path,
        X=X,
        y=y,
        model=tmp_path / "model.pkl",
        matrix=tmp_path / "features.npy",
        csv=tmp_path / "features.csv",
        monkeypatch=monkeypatch,
    )
    joblib.dump(LogisticRegression().fit(X, y), files.model)
    np.save(files.matrix, np.column_stack([X, y]))
    frame.to_csv(files.csv, index=False)
    return files


def _truncated(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    out = path.with_name(f"truncated{path.suffix}")
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def _module_pickle(f: Files, *, keep_module: bool) -> tuple[Path, str]:
    """Pickle an instance of a class from a temporary module, then make the module vanish
    (``keep_module=False``) or lose the class (``keep_module=True``)."""
    name = f"leap_gone_{abs(hash(f.dir)) % 10**8}"
    folder = f.dir / "site"
    folder.mkdir()
    source = folder / f"{name}.py"
    source.write_text("class Predictor:\n    def predict(self, X):\n        return X[:, 0]\n")
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(name)
        path = f.pickle("needs_module.pkl", module.Predictor())
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)
    if keep_module:  # the module is there, but without the class (another version)
        f.monkeypatch.syspath_prepend(str(folder))
        f.monkeypatch.delitem(sys.modules, name, raising=False)
        source.write_text("OTHER = 1  # this version has no Predictor class\n")
    else:
        source.unlink()
    importlib.invalidate_caches()
    return path, name


def _unreadable(f: Files) -> Path:
    path = f.matrix
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the OS answer as it would for a user
        real_access = os.access
        f.monkeypatch.setattr(
            "leap.data.files.os.access",
            lambda p, mode: False if Path(p) == path else real_access(p, mode),
        )
    return path


def _nan_matrix(f: Files) -> Path:
    X = f.X.copy()
    X[2, 4] = np.nan
    X[5, 7] = np.inf
    return f.npy("nan.npy", X, f.y)


def _object_strings(f: Files) -> Path:
    table = np.empty((N_ROWS, N_FEATURES + 2), dtype=object)
    table[:, :-2] = f.X
    table[:, -2] = f.y
    table[:, -1] = "P01"
    table[3, 6] = "n/a"
    path = f.dir / "strings.npy"
    np.save(path, table, allow_pickle=True)
    return path


def _three_classes(f: Files) -> tuple[Path, Path]:
    y = np.arange(N_ROWS) % 3
    model = f.pickle("multiclass.pkl", LogisticRegression().fit(f.X, y))
    return model, f.npy("multiclass.npy", f.X, y)


N = re.escape  # shorthand: a literal piece of a message

CATALOGUE: dict[str, Callable[[Files], Case]] = {
    # -- files ---------------------------------------------------------------------------
    "missing model file": lambda f: Case(
        InputFileError, r"model file not found: .*nope\.pkl$", model=f.dir / "nope.pkl"
    ),
    "missing matrix file": lambda f: Case(
        InputFileError, r"feature matrix not found: .*nope\.npy$", matrix=f.dir / "nope.npy"
    ),
    "model path is a folder": lambda f: Case(
        InputFileError, r"model file is not a file: ", model=f.dir
    ),
    "unreadable matrix": lambda f: Case(
        InputFileError,
        r"feature matrix is not readable \(permission denied\): .*features\.npy$",
        matrix=_unreadable(f),
    ),
    "unknown model suffix": lambda f: Case(
        InputFileError,
        r"no loader handles 'model\.txt' \(suffix \.txt\); known suffixes: "
        + N(".joblib, .pickle, .pkl"),
        model=f.model.rename(f.dir / "model.txt"),
    ),
    "unknown matrix suffix": lambda f: Case(
        InputFileError,
        r"no reader handles 'features\.xlsx' \(suffix \.xlsx\); known suffixes: "
        + N(".csv, .npy, .npz, .parquet, .pq"),
        matrix=f.matrix.rename(f.dir / "features.xlsx"),
    ),
    # -- empty and truncated matrices ------------------------------------------------------
    "empty .npy": lambda f: Case(
        InputFileError, r"empty\.npy is not a valid \.npy file", matrix=_empty(f, ".npy")
    ),
    "empty .npz": lambda f: Case(
        InputFileError, r"empty\.npz is not a readable \.npz archive", matrix=_empty(f, ".npz")
    ),
    "empty .csv": lambda f: Case(InputFileError, r"empty\.csv is empty$", matrix=_empty(f, ".csv")),
    "empty .parquet": lambda f: Case(
        InputFileError,
        r"empty\.parquet is not a readable Parquet file: .*0 bytes",
        matrix=_empty(f, ".parquet"),
    ),
    "csv header without rows": lambda f: Case(
        MatrixError, r"header\.csv has no rows$", matrix=_header_only(f)
    ),
    "truncated .npy": lambda f: Case(
        InputFileError,
        r"truncated\.npy is truncated: its header promises a \(40, 16\) array of float64 "
        r"\(5120 bytes\) but only \d+ bytes follow; was the file fully written\?",
        matrix=_truncated(f.matrix),
    ),
    "truncated .npz": lambda f: Case(
        InputFileError,
        r"truncated\.npz is not a readable \.npz archive",
        matrix=_truncated(_npz(f)),
    ),
    "truncated .csv": lambda f: Case(
        InputFileError,
        r"truncated\.csv looks truncated: its last line \(row \d+\) has no line end and only "
        r"\d+ of 16 values; was the file fully written\?",
        matrix=_truncated(f.csv),
    ),
    "truncated .parquet": lambda f: Case(
        InputFileError,
        r"truncated\.parquet is not a readable Parquet file: .*magic bytes",
        matrix=_truncated(_parquet(f)),
    ),
    # -- values --------------------------------------------------------------------------
    "non-numeric string in an object array": lambda f: Case(
        MatrixError,
        r"strings\.npy: feature column "
        + N(repr(LAYOUT.feature_names[6]))
        + r" holds a non-numeric value 'n/a' \(row 3\)",
        matrix=_object_strings(f),
    ),
    "NaN and infinite values": lambda f: Case(
        MatrixError,
        r"nan\.npy: 2 NaN or infinite value\(s\) in column\(s\) "
        + N(f"{LAYOUT.feature_names[4]}, {LAYOUT.feature_names[7]}")
        + r" at row\(s\) 2, 5; impute or drop them",
        matrix=_nan_matrix(f),
    ),
    # -- label ---------------------------------------------------------------------------
    "label not found": lambda f: Case(
        MatrixError,
        r"label 'target' not found in .*features\.csv; available: "
        + N(LAYOUT.feature_names[0])
        + r", ",
        matrix=f.csv,
        api=lambda: {"label": "target"},
        cli=["--label", "target"],
    ),
    "label index out of range": lambda f: Case(
        MatrixError,
        r"label index 40 is out of range for .*features\.csv, which has 16 columns "
        r"\(valid: -16 to 15\)",
        matrix=f.csv,
        api=lambda: {"label": 40},
        cli=["--label", "40"],
    ),
    "a single class": lambda f: Case(
        MatrixError,
        r"the label 'label' has a single class \(1(\.0)?\) in all 40 rows; a classifier's "
        r"importances need at least two classes",
        matrix=f.npy("one_class.npy", f.X, np.ones(N_ROWS, dtype=int)),
    ),
    "label values unknown to the model": lambda f: Case(
        MatrixError,
        r"none of the label 'label' values \('run', 'walk'\) are among the model's classes "
        r"\(0, 1\)",
        matrix=f.csv_of(
            "words.csv",
            pd.DataFrame(f.X, columns=LAYOUT.feature_names).assign(
                label=np.where(f.y == 1, "walk", "run")
            ),
        ),
    ),
    # -- width and names -------------------------------------------------------------------
    "width matches neither layout nor model": lambda f: Case(
        MatrixError,
        r"the feature matrix has 12 feature columns, the layout expects 15 \(3 sensors × 2 "
        r"dims = 15 pairs\) and the model was fitted on 10; check the label column",
        model=f.pickle("narrow.pkl", LogisticRegression().fit(f.X[:, :10], f.y)),
        matrix=f.npy("twelve.npy", f.X[:, :12], f.y),
    ),
    "width matches the layout, not the model": lambda f: Case(
        MatrixError,
        r"the feature matrix has 15 feature columns, the layout expects 15 .* and the model "
        r"was fitted on 10; is this the matrix the model was trained on\?",
        model=f.pickle("narrow.pkl", LogisticRegression().fit(f.X[:, :10], f.y)),
    ),
    "width matches the model, not the layout": lambda f: Case(
        LayoutError,
        r"the feature matrix has 10 feature columns, the layout expects 15 .* and the model "
        r"was fitted on 10; pass sensors and dims",
        model=f.pickle("narrow.pkl", LogisticRegression().fit(f.X[:, :10], f.y)),
        matrix=f.npy("ten.npy", f.X[:, :10], f.y),
    ),
    "feature names differ from feature_names_in_": lambda f: Case(
        MatrixError,
        r"the feature matrix's column names differ from the model's feature_names_in_: 15 "
        r"expected name\(s\) missing \(e\.g\. 'f0', 'f1', 'f2', 'f3', … \(15 in all\)\)",
        model=f.pickle("named.pkl", _named_model(f, [f"f{i}" for i in range(N_FEATURES)])),
        matrix=f.csv,
    ),
    "feature names in another order": lambda f: Case(
        MatrixError,
        r"the feature matrix has the model's feature names in a different order \(column 0 is "
        + N(f"'{LAYOUT.feature_names[0]}', the model expects '{LAYOUT.feature_names[1]}'"),
        model=f.pickle("named.pkl", _named_model(f, _swapped(LAYOUT.feature_names))),
        matrix=f.csv,
    ),
    # -- model files -----------------------------------------------------------------------
    "pickle of something else": lambda f: Case(
        ModelError,
        r"holds a builtins\.dict, not a fitted model with a predict\(\) method",
        model=f.pickle("dict.pkl", {"weights": [1, 2, 3]}),
    ),
    "unfitted estimator": lambda f: Case(
        ModelError,
        r"holds a sklearn\.linear_model\._logistic\.LogisticRegression that has not been fitted",
        model=f.pickle("unfitted.pkl", LogisticRegression()),
    ),
    "model without predict": lambda f: Case(
        ModelError,
        r"holds a sklearn\.preprocessing\._data\.StandardScaler, not a fitted model with a "
        r"predict\(\) method",
        model=f.pickle("scaler.pkl", StandardScaler().fit(f.X)),
    ),
    "pickle needing a module that is not installed": lambda f: Case(
        ModelError,
        r"needs_module\.pkl needs the Python module 'leap_gone_\d+', which is not installed",
        model=_module_pickle(f, keep_module=False)[0],
    ),
    "pickle needing a class its module lacks": lambda f: Case(
        ModelError,
        r"needs_module\.pkl refers to something its installed package does not provide "
        r"\(Can't get attribute 'Predictor' on <module 'leap_gone_\d+'",
        model=_module_pickle(f, keep_module=True)[0],
    ),
    "not a pickle at all": lambda f: Case(
        ModelError,
        r"junk\.pkl is not a readable pickle or joblib file",
        model=_junk(f, "junk.pkl"),
    ),
    # -- scoring ---------------------------------------------------------------------------
    "classification scorer on a regressor": lambda f: Case(
        ConfigError,
        r"scoring 'roc_auc' is a classification metric but the model \(LinearRegression\) is "
        r"a regressor; use a regression scorer such as r2",
        model=f.pickle("regressor.pkl", LinearRegression().fit(f.X, f.X[:, 0])),
        api=lambda: {"scoring": "roc_auc"},
        cli=["--scoring", "roc_auc"],
    ),
    "regression scorer on a classifier": lambda f: Case(
        ConfigError,
        r"scoring 'r2' is a regression metric but the model \(LogisticRegression\) is a "
        r"classifier; use a classification scorer such as accuracy",
        api=lambda: {"scoring": "r2"},
        cli=["--scoring", "r2"],
    ),
    "two-class scorer on three classes": lambda f: Case(
        ConfigError,
        r"scoring 'f1' works with two classes only, but the label has 3; use f1_macro instead",
        *_three_classes(f),
        api=lambda: {"scoring": "f1"},
        cli=["--scoring", "f1"],
    ),
    "misspelt scorer": lambda f: Case(
        ConfigError,
        r"unknown scoring 'acurracy'; did you mean accuracy",
        api=lambda: {"scoring": "acurracy"},
        cli=["--scoring", "acurracy"],
    ),
    # -- layout ----------------------------------------------------------------------------
    "duplicate sensors": lambda f: Case(
        LayoutError,
        r"invalid sensor layout: sensors: names must be unique, repeated: Sacrum$",
        api=lambda: {"layout": SensorLayout(sensors=("Sacrum", "Left_Ankle", "Sacrum"))},
        cli=["--sensors", "Sacrum,Left_Ankle,Sacrum"],
    ),
    "duplicate dims": lambda f: Case(
        LayoutError,
        r"invalid sensor layout: dims: names must be unique, repeated: x$",
        api=lambda: {"layout": SensorLayout(sensors=LAYOUT.sensors, dims=("x", "y", "x"))},
        cli=["--dims", "x,y,x"],
    ),
    # -- untrusted files and outputs -------------------------------------------------------
    "model digest differs from --expect-sha256": lambda f: Case(
        ModelError,
        r"model\.pkl has SHA-256 [0-9a-f]{64}, not the expected 0{64}; refusing to load it",
        api=lambda: {"expect_sha256": "0" * 64},
        cli=["--expect-sha256", "0" * 64],
    ),
    "malformed --expect-sha256": lambda f: Case(
        ConfigError,
        r"expect_sha256: must be the 64 hexadecimal digits of a SHA-256 digest .*got 'abc'",
        api=lambda: {"expect_sha256": "abc"},
        cli=["--expect-sha256", "abc"],
    ),
    "output would overwrite an input": lambda f: Case(
        LeapError,
        r"refusing to overwrite the input file .*features\.csv with an output",
        matrix=f.csv,
        api=lambda: {"save_csv_path": f.csv},
        cli=["-o", str(f.csv)],
    ),
}


def _empty(f: Files, suffix: str) -> Path:
    path = f.dir / f"empty{suffix}"
    path.write_bytes(b"")
    return path


def _junk(f: Files, name: str) -> Path:
    path = f.dir / name
    path.write_bytes(b"these are not the bytes of a pickle\n")
    return path


def _header_only(f: Files) -> Path:
    path = f.dir / "header.csv"
    path.write_text(",".join([*LAYOUT.feature_names, "label"]) + "\n")
    return path


def _npz(f: Files) -> Path:
    path = f.dir / "features.npz"
    np.savez(path, X=f.X, y=f.y)
    return path


def _parquet(f: Files) -> Path:
    path = f.dir / "features.parquet"
    pd.read_csv(f.csv).to_parquet(path)
    return path


def _named_model(f: Files, names: list[str]) -> LogisticRegression:
    return LogisticRegression().fit(pd.DataFrame(f.X, columns=names), f.y)


def _swapped(names: list[str]) -> list[str]:
    return [names[1], names[0], *names[2:]]


def _run_api(f: Files, case: Case, out: Path) -> LeapError:
    with pytest.raises(LeapError) as caught:
        kwargs = {"layout": LAYOUT, "n_repeats": 1, "save_csv_path": out, **case.api()}
        analyze_permutation_importance(case.model or f.model, case.matrix or f.matrix, **kwargs)
    return caught.value


def _run_cli(f: Files, case: Case, out: Path) -> Any:
    args = [
        "analyze",
        str(case.model or f.model),
        str(case.matrix or f.matrix),
        "-o",
        str(out),
        "--n-repeats",
        "1",
        "-q",
        *LAYOUT_ARGS,
        *case.cli,
    ]
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("row", list(CATALOGUE))
def test_catalogue_row(row: str, files: Files) -> None:
    case = CATALOGUE[row](files)
    out = files.dir / "out" / "importance.csv"

    error = _run_api(files, case, out)
    assert isinstance(error, case.error), f"{type(error).__name__}: {error}"
    message = str(error)
    assert re.search(case.message, message), message
    assert "\n" not in message

    done = _run_cli(files, case, out)
    assert done.exit_code == 2, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert done.stderr == f"leap: error: {message}\n"
    assert "Traceback" not in done.output
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_debug_flag_shows_the_traceback(files: Files) -> None:
    done = CliRunner().invoke(
        cli, ["--debug", "analyze", str(files.dir / "nope.pkl"), str(files.matrix)]
    )
    assert isinstance(done.exception, InputFileError)


def test_layout_given_as_mapping_is_checked_too(files: Files) -> None:
    with pytest.raises(LayoutError, match="repeated: a"):
        analyze_permutation_importance(
            files.model, files.matrix, layout={"sensors": ["a", "a"], "dims": ["x"]}
        )


# -- untrusted model files ---------------------------------------------------------------
class _MakesMarker:
    """Unpickling this runs os.mkdir(marker): a stand-in for any code in a hostile pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_expect_sha256_refuses_before_unpickling(files: Files) -> None:
    marker = files.dir / "code-ran"
    hostile = files.pickle("hostile.pkl", _MakesMarker(marker))
    out = files.dir / "out.csv"
    with pytest.raises(ModelError, match="refusing to load it"):
        analyze_permutation_importance(
            hostile, files.matrix, save_csv_path=out, layout=LAYOUT, expect_sha256="1" * 64
        )
    refused = Case(ModelError, "", model=hostile, cli=["--expect-sha256", "2" * 64])
    done = _run_cli(files, refused, out)
    assert done.exit_code == 2 and "refusing to load it" in done.stderr
    assert not marker.exists()

    # The same file with its true digest is loaded, and its code does run: the check above
    # is what stood between the file and the unpickler.
    with pytest.raises(ModelError, match=r"holds a builtins\.NoneType"):
        analyze_permutation_importance(
            hostile, files.matrix, save_csv_path=out, expect_sha256=sha256_of(hostile)
        )
    assert marker.is_dir()


def test_expect_sha256_accepts_the_right_digest(files: Files, engine) -> None:
    digest = sha256_of(files.model)
    result = analyze_permutation_importance(
        files.model,
        files.matrix,
        save_csv_path=files.dir / "out.csv",
        layout=LAYOUT,
        n_repeats=1,
        expect_sha256=f"SHA256:{digest.upper()}",
        engine=engine,
    )
    assert result.importances.shape == (N_FEATURES, 1)
    assert engine.load_model(files.model, expect_sha256=digest).n_features_in_ == N_FEATURES


def test_expect_sha256_from_a_toml_config(files: Files) -> None:
    config = files.dir / "leap.toml"
    config.write_text(
        "[analysis]\n"
        'model_path = "model.pkl"\n'
        'feature_matrix = "features.npy"\n'
        'save_csv_path = "out.csv"\n'
        f'expect_sha256 = "{"f" * 64}"\n'
        "[analysis.layout]\n"
        'sensors = ["Left_Ankle", "Right_Ankle", "Sacrum"]\n'
        'dims = ["x", "y"]\n'
    )
    done = CliRunner().invoke(cli, ["analyze", "--config", str(config), "-q"])
    assert done.exit_code == 2
    expected = (
        r"leap: error: .*model\.pkl has SHA-256 [0-9a-f]{64}, not the expected f{64}; "
        r"refusing to load it \(loading a pickle runs code from the file\)\n"
    )
    assert re.fullmatch(expected, done.stderr)


# -- nothing lost --------------------------------------------------------------------------
def _fingerprints(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_failed_run_leaves_earlier_outputs_intact(files: Files, engine) -> None:
    out = files.dir / "results" / "importance.csv"
    common = {"save_csv_path": out, "layout": LAYOUT, "n_repeats": 1, "engine": engine}
    analyze_permutation_importance(files.model, files.matrix, **common)
    before = _fingerprints(out.parent)
    assert set(before) == {"importance.csv", "importance.png"}

    with pytest.raises(MatrixError):
        analyze_permutation_importance(files.model, _nan_matrix(files), **common)
    with pytest.raises(ConfigError):
        analyze_permutation_importance(files.model, files.matrix, scoring="r2", **common)
    done = _run_cli(files, Case(LeapError, "", matrix=_empty(files, ".csv")), out)
    assert done.exit_code == 2
    assert _fingerprints(out.parent) == before  # same files, same bytes, no temp files


def test_a_failing_renderer_keeps_the_previous_figure(files: Files, engine, monkeypatch) -> None:
    out = files.dir / "importance.csv"
    common = {"save_csv_path": out, "layout": LAYOUT, "n_repeats": 1, "engine": engine}
    analyze_permutation_importance(files.model, files.matrix, **common)
    figure = out.with_suffix(".png").read_bytes()

    def half_written(self, target, *args, **kwargs):
        half = figure[: len(figure) // 2]
        if hasattr(target, "write"):
            target.write(half)
        else:
            Path(target).write_bytes(half)
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", half_written)
    with pytest.raises(LeapError, match=r"cannot write .*importance\.png: disk full"):
        analyze_permutation_importance(files.model, files.matrix, **common)
    assert out.with_suffix(".png").read_bytes() == figure
    assert sorted(p.name for p in files.dir.glob(".*tmp*")) == []


def test_output_folders_are_created(files: Files) -> None:
    out = files.dir / "a" / "b" / "c" / "importance.csv"
    done = _run_cli(files, Case(LeapError, ""), out)
    assert done.exit_code == 0, done.output
    assert out.is_file() and out.with_suffix(".png").is_file()


def test_refuses_to_overwrite_an_input_through_another_name(files: Files) -> None:
    link = files.dir / "same-bytes.csv"
    os.link(files.csv, link)
    before = files.csv.read_bytes()
    with pytest.raises(LeapError, match=r"refusing to overwrite the input file .*same-bytes"):
        analyze_permutation_importance(
            files.model, files.csv, save_csv_path=link, layout=LAYOUT, n_repeats=1
        )
    with pytest.raises(LeapError, match=r"refusing to overwrite the input file .*model\.pkl"):
        analyze_permutation_importance(
            files.model,
            files.csv,
            save_csv_path=files.dir / "x.csv",
            heatmap_path=files.dir / "sub" / ".." / "model.pkl",
            layout=LAYOUT,
        )
    assert files.csv.read_bytes() == before


# -- nothing evaluated ---------------------------------------------------------------------
#: Calls that turn text into code or objects; none may appear in LEAP's sources.
FORBIDDEN_CALLS = {"eval", "exec", "compile", "literal_eval", "__import__", "execfile"}
#: Module functions that unpickle or evaluate text.
FORBIDDEN_ATTRIBUTES = {
    ("pickle", "loads"),
    ("pickle", "load"),
    ("marshal", "loads"),
    ("marshal", "load"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("pd", "eval"),
    ("pandas", "eval"),
    ("shelve", "open"),
}


def _forbidden_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
            found.append(f"{path.name}:{node.lineno} {func.id}()")
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else ""
            if (
                func.attr in FORBIDDEN_CALLS - {"compile"}
                or (owner, func.attr) in FORBIDDEN_ATTRIBUTES
                or func.attr in {"query", "eval"}  # DataFrame.query/.eval evaluate strings
            ):
                found.append(f"{path.name}:{node.lineno} {owner}.{func.attr}()")
    return found


def test_no_source_evaluates_text() -> None:
    sources = sorted((LEAP_ROOT / "leap").rglob("*.py"))
    assert len(sources) > 10
    assert [hit for path in sources for hit in _forbidden_calls(path)] == []


def test_the_scan_catches_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import ast, pickle, pandas as pd\n"
        "eval(x)\nast.literal_eval(x)\npickle.loads(x)\npd.eval(x)\nframe.query(x)\n"
        "import re\nre.compile('fine')\n"
    )
    assert len(_forbidden_calls(bad)) == 5


def test_legacy_csv_code_is_data_not_code(files: Files) -> None:
    from leap.data.result import ImportanceResult
    from leap.errors import ResultFormatError

    marker = files.dir / "ran"
    payload = f"__import__('os').mkdir({str(marker)!r})"
    path = files.dir / "legacy.csv"
    pd.DataFrame({"Pair": [payload], "Dimensions": ["('x', 'y')"], "Importance": ["0.1"]}).to_csv(
        path, index=False
    )
    with pytest.raises(ResultFormatError, match="expected a pair of quoted names"):
        ImportanceResult.from_csv(path)
    done = CliRunner().invoke(cli, ["plot", str(path)])
    assert done.exit_code == 2 and "expected a pair of quoted names" in done.stderr
    assert not marker.exists()


def test_safety_doc_python_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leap.workflows.demo import make_leap_dataset

    data = make_leap_dataset(n_participants=4, windows_per_participant=10, random_state=4)
    joblib.dump(LogisticRegression(max_iter=500).fit(data.X, data.y), tmp_path / "model.pkl")
    np.save(tmp_path / "features.npy", data.to_leap_array(), allow_pickle=True)
    monkeypatch.chdir(tmp_path)
    text = (LEAP_ROOT / "docs" / "safety.md").read_text(encoding="utf-8")
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL)]
    assert len(blocks) == 2
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/safety.md", "exec"), namespace)  # our own docs
    assert namespace["result"].params["feature_matrix"] == "features.npy"
    assert (tmp_path / "checked" / "importance.csv").is_file()
    assert namespace["report"].ok


class _FailsAfterFirstPredict(LogisticRegression):
    """Predicts once (the baseline), then fails like a model with a hidden bug."""

    def predict(self, X):
        calls = getattr(self, "calls_", 0)
        self.calls_ = calls + 1
        if calls:
            raise ValueError("internal model failure\non two lines")
        return super().predict(X)


def test_failure_while_scoring_is_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    joblib.dump(_FailsAfterFirstPredict().fit(X, y), tmp_path / "m.pkl")
    np.savez(tmp_path / "x.npz", X=X, y=y)
    layout = SensorLayout(sensors=["a", "b", "c"], dims=["x"])
    with pytest.raises(LeapError) as info:
        analyze_permutation_importance(
            tmp_path / "m.pkl", tmp_path / "x.npz", "label", tmp_path / "i.csv", layout=layout
        )
    assert str(info.value) == (
        "method 'permutation' failed while scoring the model: "
        "ValueError: internal model failure on two lines"
    )
    assert isinstance(info.value.__cause__, ValueError)
    assert not (tmp_path / "i.csv").exists()
