"""The built-in plugins: ordinary plugins, loaded by dotted name as entry points are.

Nothing in LEAP's core imports this package; the plugin manager imports each module named
in :data:`leap.plugin_manager.BUILTIN_PLUGINS`, and third-party plugins take priority.
"""
