"""LEAP: which sensors and sensor pairs drive a trained model's predictions.

The public API is imported lazily: ``import leap`` loads none of the heavy libraries
(matplotlib, scikit-learn, pandas, ...); each name below is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "AnalysisConfig": "leap.workflows.config",
    "ChannelPair": "leap.data.layout",
    "Engine": "leap.engine",
    "FeatureMatrix": "leap.components",
    "ImportanceResult": "leap.data.result",
    "LeapError": "leap.errors",
    "MethodScores": "leap.components",
    "MethodSettings": "leap.components",
    "RefineResult": "leap.workflows.refine",
    "SelectByImportance": "leap.workflows.selection",
    "SensorLayout": "leap.data.layout",
    "analyze_permutation_importance": "leap.api",
    "get_engine": "leap.engine",
    "hookimpl": "leap.hookspecs",
    "permutation_importance": "leap.api",
    "plot_sensor_pair_importance": "leap.api",
    "refine": "leap.workflows.refine",
}

__all__ = [
    "AnalysisConfig",
    "ChannelPair",
    "Engine",
    "FeatureMatrix",
    "ImportanceResult",
    "LeapError",
    "MethodScores",
    "MethodSettings",
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

if TYPE_CHECKING:
    from leap.api import (
        analyze_permutation_importance,
        permutation_importance,
        plot_sensor_pair_importance,
    )
    from leap.components import FeatureMatrix, MethodScores, MethodSettings
    from leap.data.layout import ChannelPair, SensorLayout
    from leap.data.result import ImportanceResult
    from leap.engine import Engine, get_engine
    from leap.errors import LeapError
    from leap.hookspecs import hookimpl
    from leap.workflows.config import AnalysisConfig
    from leap.workflows.refine import RefineResult, refine
    from leap.workflows.selection import SelectByImportance


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
