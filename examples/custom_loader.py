"""A custom model loader, registered in-process (no packaging needed).

Run it:  python examples/custom_loader.py [OUT_DIR]

Without OUT_DIR it works in a temporary folder and removes it afterwards, so nothing is
left behind in the working directory.

It fits a model on synthetic LEAP data, stores it as a gzip-compressed pickle
(``.pkl.gz``, a suffix the built-in loader does not claim), and analyses it through a
loader plugin defined right here. The same class, put in a package with an entry point
in the ``leap`` group, becomes an installable plugin (see docs/plugins.md).
"""

from __future__ import annotations

import gzip
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

import leap
from leap.workflows.demo import make_leap_dataset


class GzipPickleLoader:
    """Loads models saved as gzip-compressed pickles (trusted files only: unpickling runs code)."""

    name = "gzip-pickle"
    suffixes = (".pkl.gz",)

    def load(self, path: Path):
        with gzip.open(path, "rb") as fh:
            return pickle.load(fh)


@leap.hookimpl
def register_loaders(register):
    register(GzipPickleLoader())


def main(out_dir: Path) -> leap.ImportanceResult:
    data = make_leap_dataset(n_participants=12, windows_per_participant=25)
    model = LogisticRegression(C=0.05, max_iter=2000).fit(data.X, data.y)
    out_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(out_dir / "model.pkl.gz", "wb") as fh:
        pickle.dump(model, fh)
    np.save(out_dir / "features.npy", data.to_leap_array(), allow_pickle=True)

    # This module is the plugin: the engine picks the loader by the .pkl.gz suffix.
    engine = leap.Engine(plugins=[sys.modules[__name__]])
    return leap.analyze_permutation_importance(
        model_path=out_dir / "model.pkl.gz",
        feature_matrix=out_dir / "features.npy",
        label="label",
        save_csv_path=out_dir / "importance.csv",
        heatmap_title="Custom loader example",
        n_repeats=3,
        engine=engine,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        result = main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="leap-example-") as scratch:
            result = main(Path(scratch))
    print(result.top(3)[["rank", "feature", "importance_mean"]].to_string(index=False))
