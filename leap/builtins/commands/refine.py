"""Built-in ``leap refine`` command: the smallest feature set and sensor set that keep accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from leap.cli import input_options, layout_from, parse_label, show_progress
from leap.hookspecs import hookimpl


def _k_grid(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"give whole numbers separated by commas, got {text!r}") from None


def _cv(text: str) -> int | str:
    if text.strip().lower() == "logo":
        return "logo"
    if text.strip().isdigit():
        return int(text)
    raise click.BadParameter(f"give a number of folds or 'logo', got {text!r}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path, readable=False))
@click.argument("matrix", type=click.Path(path_type=Path, readable=False))
@input_options
@click.option(
    "-o",
    "--out",
    "csv_path",
    type=click.Path(path_type=Path),
    default=Path("refine.csv"),
    show_default=True,
    help="CSV of the cross-validated curve.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    help="Figure of score vs k and vs sensors (.png/.svg/.pdf).  [default: the CSV's name, .png]",
)
@click.option(
    "--summary",
    "json_path",
    type=click.Path(path_type=Path),
    help="JSON with the recommended features and sensors.  [default: the CSV's name, .json]",
)
@click.option(
    "--write-matrix",
    "matrix_out",
    type=click.Path(path_type=Path),
    help="Also write the reduced matrix here (.npy/.npz/.csv/.parquet; use MATRIX's suffix "
    "to keep its format).",
)
@click.option(
    "--keep",
    type=click.Choice(["features", "sensors"]),
    default="features",
    show_default=True,
    help="What the reduced matrix keeps: the top-k features, or every feature of the "
    "recommended sensors.",
)
@click.option(
    "--cv",
    "cv",
    default="5",
    show_default=True,
    help="Number of folds (by participant when ids exist), or 'logo' (leave one participant out).",
)
@click.option(
    "--k",
    "k_grid",
    help="Comma-separated numbers of features to try.  [default: 1-10, then log-spaced]",
)
@click.option(
    "--no-sensors", is_flag=True, help="Skip backward sensor elimination (top-k curve only)."
)
@click.option(
    "--scoring", help="A scikit-learn scorer for the curve.  [default: the model's score]"
)
@click.option(
    "--rank-scoring",
    default="auto",
    show_default=True,
    help="Scorer of the importances that rank features ('auto': neg_log_loss for "
    "probabilistic classifiers, else --scoring).",
)
@click.option(
    "--n-repeats",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Permutations per feature when ranking.",
)
@click.option(
    "--validation-size",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.25,
    show_default=True,
    help="Share of each training fold held out to rank features.",
)
@click.option(
    "--inner-cv",
    type=click.IntRange(min=2),
    help="Rank with importances cross-fitted over this many folds of each training fold.",
)
@click.option("--random-state", type=int, default=0, show_default=True, help="Seed.")
@click.option("--n-jobs", type=int, help="Folds in parallel (-1: all cores).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def refine(
    model: Path,
    matrix: Path,
    label: str | None,
    participant: str | None,
    csv_path: Path,
    plot_path: Path | None,
    json_path: Path | None,
    matrix_out: Path | None,
    keep: str,
    cv: str,
    k_grid: str | None,
    no_sensors: bool,
    scoring: str | None,
    rank_scoring: str,
    n_repeats: int,
    validation_size: float,
    inner_cv: int | None,
    random_state: int,
    n_jobs: int | None,
    loader: str | None,
    reader: str | None,
    sensors: str | None,
    dims: str | None,
    expect_sha256: str | None,
    trust: tuple[str, ...],
    header: bool | None,
    max_cells: int | None,
    quiet: bool,
) -> None:
    """Find how few features and sensors MODEL needs on MATRIX, without leakage.

    Cross-validates (by participant when MATRIX has ids) a clone of MODEL retrained on the
    top-k features for a grid of k, and on every sensor set reached by backward
    elimination; features and sensors are ranked by permutation importance inside every
    training fold, never on the test fold. Picks the smallest k and sensor set within one
    standard error of the best, writes the curve (CSV), a plot and a JSON summary.
    Loading a pickled MODEL runs code from it: use --expect-sha256 for files from elsewhere.
    """
    from leap.data.files import OutputSet
    from leap.data.layout import SensorLayout
    from leap.engine import get_engine
    from leap.workflows.refine import refine as run_refine
    from leap.workflows.refine import write_matrix

    plot_path = plot_path or csv_path.with_suffix(".png")
    json_path = json_path or csv_path.with_suffix(".json")
    targets = {"csv": csv_path, "plot": plot_path, "summary": json_path}
    if matrix_out is not None:
        targets["matrix"] = matrix_out
    outputs = OutputSet(targets, inputs=[model, matrix])
    layout = layout_from(sensors, dims) or SensorLayout()
    engine = get_engine()
    estimator = engine.load_model(model, loader, expect_sha256=expect_sha256, trust=trust)
    data = engine.read_matrix(
        matrix,
        parse_label(label) or "label",
        reader,
        layout,
        participant,
        header=header,
        max_cells=max_cells,
    )
    result = run_refine(
        estimator,
        data.X,
        data.y,
        participants=data.participants,
        feature_names=data.feature_names,
        layout=layout,
        k_grid=_k_grid(k_grid),
        sensors=False if no_sensors else None,
        cv=_cv(cv),
        scoring=scoring,
        rank_scoring=rank_scoring,
        n_repeats=n_repeats,
        validation_size=validation_size,
        inner_cv=inner_cv,
        random_state=random_state,
        n_jobs=n_jobs,
        progress=show_progress(quiet),
    )
    result.params.update(model_path=str(model), feature_matrix=str(matrix))
    with outputs:
        result.to_csv(outputs.path("csv"))
        result.plot(outputs.path("plot"))
        result.to_json(outputs.path("summary"))
        if matrix_out is not None:
            sub_layout = _sub_layout(result, keep)
            write_matrix(data, result.columns(keep), outputs.path("matrix"), layout=sub_layout)
        written = outputs.commit()
    if not quiet:
        _print_summary(result)
        click.echo(f"Wrote {', '.join(str(p) for p in written)}")


def _sub_layout(result: Any, keep: str) -> Any:
    """The layout of the recommended sensors, when the reduced matrix is one."""
    if keep != "sensors" or result.layout is None or result.sensors is None:
        return None
    from leap.data.layout import SensorLayout

    kept = tuple(s for s in result.layout.sensors if s in result.sensors)
    return SensorLayout(sensors=kept, dims=result.layout.dims)


def _print_summary(result: Any) -> None:
    def score(row: Any) -> str:
        return f"{row['mean_score']:.4f} ± {row['sem_score']:.4f} (SE)"

    full, chosen = result.full_model, result.chosen_k
    click.echo(f"Cross-validation: {result.cv}; {result.scoring}, greater is better")
    click.echo(f"All {int(full['n_features'])} features: {score(full)}")
    click.echo(f"Top-k, 1-SE choice: k = {result.k}: {score(chosen)}")
    for name in result.features:
        click.echo(f"  {name}")
    row = result.chosen_sensors
    if row is not None:
        click.echo(
            f"Sensors, 1-SE choice: {len(result.sensors)} of {len(result.layout.sensors)} "
            f"({int(row['n_features'])} features): {score(row)}"
        )
        click.echo(f"  {', '.join(result.sensors)}")


@hookimpl(trylast=True)
def register_commands(cli: Any) -> None:
    cli.add_command(refine)
