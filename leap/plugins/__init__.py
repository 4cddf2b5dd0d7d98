"""The built-in plugins. Each is an ordinary plugin; third-party ones take priority."""

from leap.plugins import doctor, heatmap, permutation, pickle_loader, readers

DEFAULT_PLUGINS = (pickle_loader, readers, permutation, heatmap, doctor)
