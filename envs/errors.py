"""Errors a user can cause: bad files, bad columns, bad configs, unknown tracks, broken run folders.

Entry points catch :class:`MusicRLError`, print its message as one line and exit with status 2.
Everything else is a bug and keeps its traceback.
"""


class MusicRLError(Exception):
    """Base class of every error a user can cause."""


class CatalogError(MusicRLError):
    """A track catalog cannot be read or fails validation."""


class FeedbackError(MusicRLError):
    """A feedback log cannot be read or fails validation."""


class ConfigError(MusicRLError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


class RunFolderError(MusicRLError):
    """A run folder is missing files, holds corrupt artifacts or comes from another project version."""


class UnknownTrackError(MusicRLError):
    """A track id or query matches no track of the catalog."""


class ResultsError(MusicRLError):
    """A results file (``results/<table>.json``) or a generated block of a document is missing, malformed or
    out of date."""
