"""Exceptions a user can act on. The CLI prints their message and exits non-zero, no traceback."""


class DkgzslError(Exception):
    """Base class: the message says what happened, which file, and what to do."""

    exit_code = 1


class BundleError(DkgzslError):
    """A model bundle is missing, malformed, tampered with or of another format version."""


class DataError(DkgzslError):
    """Feature files, attribute matrices, splits or class CSVs are malformed."""
