"""Synthetic LEAP-shaped data with known informative sensor pairs, and the demo run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leap.data.layout import SensorLayout

#: The channel pairs that carry the label in the demo data (three sensor pairs,
#: four sensors: Right_Wrist carries nothing).
PLANTED_PAIRS = (
    "Left_Ankle.x_acc|Right_Ankle.x_acc",
    "Left_Wrist.y_gyro|Sacrum.z_acc",
    "Right_Ankle.z_gyro|Sacrum.x_acc",
)


@dataclass
class DemoData:
    """A LEAP-shaped data set: features, binary label, participant ids, planted features."""

    X: np.ndarray
    y: np.ndarray
    participants: np.ndarray
    layout: SensorLayout
    planted: tuple[str, ...]

    def to_leap_array(self) -> np.ndarray:
        """The original LEAP ``.npy`` layout: features, then label, then participant id."""
        out = np.empty((self.X.shape[0], self.X.shape[1] + 2), dtype=object)
        out[:, :-2] = self.X
        out[:, -2] = self.y
        out[:, -1] = self.participants
        return out


def make_leap_dataset(
    n_participants: int = 40,
    windows_per_participant: int = 30,
    layout: SensorLayout | None = None,
    planted: tuple[str, ...] = PLANTED_PAIRS,
    random_state: int = 0,
) -> DemoData:
    """Generate channel-pair features whose label depends on the ``planted`` features only.

    Features look like correlations between channels (values in (-1, 1), with a
    per-participant offset); within-sensor pairs are constant zero, as in LEAP's data.
    """
    layout = layout or SensorLayout()
    rng = np.random.default_rng(random_state)
    n = n_participants * windows_per_participant
    participants = np.repeat(
        [f"P{i + 1:02d}" for i in range(n_participants)], windows_per_participant
    )
    offsets = rng.normal(0.0, 0.3, size=(n_participants, layout.n_features))
    latent = rng.normal(0.0, 0.8, size=(n, layout.n_features))
    latent += np.repeat(offsets, windows_per_participant, axis=0)
    X = np.tanh(latent)
    within = [p.sensor_a == p.sensor_b for p in layout.pairs]
    X[:, within] = 0.0
    index = {name: i for i, name in enumerate(layout.feature_names)}
    cols = [index[name] for name in planted]
    weights = np.linspace(3.0, 2.0, len(cols))
    logit = (X[:, cols] - X[:, cols].mean(axis=0)) @ weights * 2.0
    y = (logit + rng.logistic(0.0, 0.5, size=n) > 0).astype(np.int64)
    return DemoData(X, y, participants, layout, tuple(planted))


def run_demo(out_dir: str | Path, *, progress: bool = False, n_repeats: int = 10):
    """Generate data, fit a model, save it as a pickle, and run the documented analysis.

    Writes ``model.pkl``, ``features.npy`` (held-out participants, original LEAP layout),
    ``importance.csv`` with its heatmap ``importance.png``, the jointly permuted sensor-pair
    and sensor tables (``importance_sensor_pair.csv``, ``importance_sensor.csv``) and
    ``report.html`` into ``out_dir``; returns the result (grouped ones in ``.groups``).
    """
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from leap.data.files import atomic_path
    from leap.engine import get_engine
    from leap.workflows.analyze import analyze
    from leap.workflows.config import AnalysisConfig

    out = Path(out_dir)
    data = make_leap_dataset()
    held_out = np.isin(data.participants, np.unique(data.participants)[-12:])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    model.fit(data.X[~held_out], data.y[~held_out])
    with atomic_path(out / "model.pkl") as tmp:
        joblib.dump(model, tmp)
    with atomic_path(out / "features.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, data.to_leap_array()[held_out], allow_pickle=True)
    config = AnalysisConfig.create(
        model_path=out / "model.pkl",
        feature_matrix=out / "features.npy",
        label="label",
        save_csv_path=out / "importance.csv",
        heatmap_title="LEAP demo: sensor-pair importance",
        n_repeats=n_repeats,
        progress=progress,
        groups=["sensor_pair", "sensor"],
        report_path=out / "report.html",
    )
    return analyze(get_engine(), config)
