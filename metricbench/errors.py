"""The one exception type that marks a wrong *type* in the user's input, as opposed to a bug.

The CLI turns ValueError, FileNotFoundError and the like into a one-line usage error (exit 2). A plain
TypeError is left alone, with its traceback (exit 1): it usually means a bug in the code. Validation
that finds a wrong type in what the user gave (a config value, a file's dtype) raises `InputTypeError`,
which is a TypeError for library callers and a usage error for the CLI.
"""

from __future__ import annotations

__all__ = ["InputTypeError"]


class InputTypeError(TypeError):
    """A value from the user's config, command line or files has the wrong type."""
