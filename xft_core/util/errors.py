"""The one base class of errors the user can fix, so the command line can tell them from bugs.

`xft` prints a `UserError` (and an `OSError`: a missing file, a full disk) as one `error:` line and exits 2;
any other exception is an internal error, printed with a request to report it, exit 1. xft's own error classes
(`ConfigError`, `DataError`, `AdapterError`, `PluginError`, `DataSourceError`, ...) derive from it; a plugin raises
it (exported by `xft_core.hooks`) for input it rejects. It is a `ValueError`, so code that catches bad values
catches it too.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input the user can fix (a config key, a data file, a package, a command-line value): the message says
    what, where and what to do."""


class DataWarning(UserWarning):
    """Data that is read, but perhaps not as meant (a file skipped, an empty file, a language only evaluated); names
    the file. `xft` prints it as a `warning:` line; a data source plugin warns with it too (`xft_core.hooks`)."""
