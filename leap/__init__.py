"""LEAP: which sensors and sensor pairs drive a trained model's predictions."""

from leap.api import (
    analyze_permutation_importance,
    permutation_importance,
    plot_sensor_pair_importance,
)
from leap.components import FeatureMatrix, MethodScores
from leap.data.layout import ChannelPair, SensorLayout
from leap.data.result import ImportanceResult
from leap.engine import Engine, get_engine
from leap.errors import LeapError
from leap.hookspecs import hookimpl
from leap.workflows.config import AnalysisConfig
from leap.workflows.refine import RefineResult, refine
from leap.workflows.selection import SelectByImportance

__all__ = [
    "AnalysisConfig",
    "ChannelPair",
    "Engine",
    "FeatureMatrix",
    "ImportanceResult",
    "LeapError",
    "MethodScores",
    "RefineResult",
    "SelectByImportance",
    "SensorLayout",
    "analyze_permutation_importance",
    "get_engine",
    "hookimpl",
    "permutation_importance",
    "plot_sensor_pair_importance",
    "refine",
]
