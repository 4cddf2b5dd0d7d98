"""The sensor-matrix aggregations: one table of their names, reductions and wording.

A sensor × sensor cell combines the channel-pair rows that fall on two sensors; every
view (the heatmap, the comparison, the report, the command-line choices, the settings)
names and describes the aggregations from this one table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Aggregation:
    """How the rows of one sensor pair become one cell, and how to say so."""

    name: str
    #: Reduces the (already selected) importances of a cell's rows to one number.
    reduce: Callable[..., Any]
    #: What one cell holds, for colour bars.
    label: str
    #: The heatmap's default title.
    title: str
    #: A figure caption that says what the view shows and what it hides.
    caption: str


AGGREGATIONS: dict[str, Aggregation] = {
    a.name: a
    for a in (
        Aggregation(
            "sum_positive",
            np.sum,
            "Sum of positive importances of the channel pairs",
            "Sensor-pair importance (sum of positive channel pairs)",
            "Sensor × sensor: the sum of the positive channel-pair importances (the original "
            "LEAP view). Each channel pair was permuted alone, so correlated pairs can share "
            "or hide importance.",
        ),
        Aggregation(
            "sum",
            np.sum,
            "Sum of importances of the channel pairs",
            "Sensor-pair importance (sum of channel pairs)",
            "Sensor × sensor: the sum of the channel-pair importances.",
        ),
        Aggregation(
            "signed",
            np.sum,
            "Sum of signed importances of the channel pairs",
            "Sensor-pair importance (signed sum of channel pairs)",
            "Sensor × sensor: the signed sum of the channel-pair importances, centred on zero; "
            "negative cells are pairs whose permutation improved the score.",
        ),
        Aggregation(
            "mean",
            np.mean,
            "Mean importance of the channel pairs",
            "Sensor-pair importance (mean of channel pairs)",
            "Sensor × sensor: the mean channel-pair importance.",
        ),
        Aggregation(
            "max",
            np.max,
            "Largest importance among the channel pairs",
            "Sensor-pair importance (largest channel pair)",
            "Sensor × sensor: the largest channel-pair importance.",
        ),
        Aggregation(
            "grouped",
            np.sum,
            "Importance of the sensor pair, permuted as one group",
            "Sensor-pair importance (each pair permuted as a group)",
            "Sensor × sensor: each sensor pair permuted as one group, i.e. what the model "
            "loses without the relation between the two sensors.",
        ),
    )
}
#: The aggregation names, in the order the command line lists them.
AGGREGATE_NAMES = tuple(AGGREGATIONS)
#: The type of a setting that names an aggregation.
Aggregate = Literal["sum_positive", "sum", "signed", "mean", "max", "grouped"]
