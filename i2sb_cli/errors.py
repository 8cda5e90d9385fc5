"""The library's one exception family.

Every failure a user can cause (a bad picture, a bad checkpoint, a bad option value, a missing
download) is an `I2SBError`. The CLI maps each subclass to a one-line message and an exit code;
anything else escaping is a bug.
"""


class I2SBError(Exception):
    """Base class: a user-facing failure with a message that says what to do."""

    exit_code = 1


class UsageError(I2SBError):
    """An option or argument value that cannot work (the CLI reports it like a usage error)."""

    exit_code = 2


class ImageError(I2SBError):
    """A picture that cannot be read, decoded or written."""


class OutputExistsError(ImageError):
    """An output that appeared while it was being made (another run wrote it first); it is
    never replaced unless the user asked to overwrite."""


class CheckpointError(I2SBError):
    """A checkpoint file that is missing, corrupt, or not a model this tool can run."""


class ModelNotFoundError(I2SBError):
    """A model name or task with no known or bundled checkpoint."""


class ClusterError(I2SBError):
    """Another process of a torchrun job stopped, so that this one cannot finish with it."""
