"""The built-in plugins. Each is an ordinary plugin; third-party ones take priority."""

from leap.plugins import (
    bars,
    channel_heatmap,
    compare,
    doctor,
    heatmap,
    permutation,
    pickle_loader,
    readers,
    refine,
    report,
    spread,
)

DEFAULT_PLUGINS = (
    pickle_loader,
    readers,
    permutation,
    heatmap,
    doctor,
    channel_heatmap,
    bars,
    spread,
    report,
    compare,
    refine,
)
