"""Examples and documentation snippets are executed, so they never rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from leap import AnalysisConfig

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(doc: str, language: str) -> list[str]:
    text = (ROOT / "docs" / doc).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_custom_loader_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_loader.py"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "rank" in done.stdout
    frame = pd.read_csv(tmp_path / "out" / "importance.csv")
    assert len(frame) == 435
    assert (tmp_path / "out" / "importance.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing else written here


def test_custom_loader_example_leaves_nothing_behind(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_loader.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "rank" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_getting_started_python_snippets_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = code_blocks("getting-started.md", "python")
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, "getting-started.md", "exec"), namespace)  # our own docs
    assert (tmp_path / "demo_output/analysis/importance.png").exists()
    assert (tmp_path / "demo_output/analysis/heatmap.svg").exists()
    assert namespace["result"].top(1)["feature"].item() == "Left_Ankle.x|Right_Ankle.x"


def test_getting_started_toml_is_a_valid_config(tmp_path):
    (block,) = code_blocks("getting-started.md", "toml")
    (tmp_path / "analysis.toml").write_text(block)
    config = AnalysisConfig.from_toml(tmp_path / "analysis.toml")
    assert config.model_path == tmp_path / "model.pkl"
    assert config.layout.n_features == 36
    assert config.n_repeats == 20
