"""The errors unilip raises for bad input.

Every error a user can cause (a bad config value, a corrupt image, a wrong shape) is a :class:`UniLIPError`, so
the CLI can print one clear line instead of a traceback, and Python callers can catch one type.
"""


class UniLIPError(Exception):
    """Base class of every user-facing unilip error."""


class ConfigError(UniLIPError, ValueError):
    """A config key, value or file is invalid. The message names the key and what is allowed."""


class ImageLoadError(UniLIPError, ValueError):
    """An image could not be read. The message names the source (file) and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read image {source}: {reason}")
