"""Exceptions a user can act on. The CLI prints their message and exits non-zero, no traceback.

Every library error a user can cause is a ``DkgzslError``; the CLI catches the family in one place
(``dkgzsl_app.cli_util.DkgzslGroup``) and exits with ``exit_code``.
"""


class DkgzslError(Exception):
    """Base class: the message says what happened, which file, and what to do."""

    exit_code = 1


class UsageError(DkgzslError):
    """An option or argument value is unusable (bad device name, non-finite number): exit code 2."""

    exit_code = 2


class BundleError(DkgzslError):
    """A model bundle is missing, malformed, tampered with or of another format version."""


class DataError(DkgzslError):
    """Feature files, attribute matrices, splits or class CSVs are malformed."""


class OutputError(DataError):
    """A file or folder cannot be written (read-only folder, a folder where a file should go, disk full).

    A DataError too, so code that caught write failures as DataError keeps working."""
