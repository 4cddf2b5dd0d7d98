"""Errors raised by LEAP: one base class, so callers can catch every bad-input case at once."""

from __future__ import annotations


class LeapError(Exception):
    """Base class of every error LEAP raises for bad input or a failed plugin.

    The message is one line a user can act on; the CLI prints it and exits with status 2.
    Whitespace in it (a newline inside a column name, say) is folded to single spaces.
    """

    def __str__(self) -> str:
        return one_line(super().__str__())


class InputFileError(LeapError):
    """A file is missing, unreadable, truncated or of an unsupported kind."""


class MatrixError(LeapError):
    """A feature matrix does not fit the layout, the label or the model."""


class ModelError(LeapError):
    """A model file does not hold a usable fitted estimator."""


class LayoutError(LeapError):
    """A sensor layout is invalid, or does not match the data."""


class PluginError(LeapError):
    """A plugin failed to load or register, or no plugin provides what was asked for."""


class ResultFormatError(LeapError):
    """An importance CSV cannot be parsed."""


class ConfigError(LeapError):
    """An analysis configuration is invalid."""


def one_line(message: object) -> str:
    """``message`` (an exception or text) on one line: runs of whitespace become one space."""
    return " ".join(str(message).split())
