"""The one error type the CLI turns into a clean message and a non-zero exit."""


class IctError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 2


class StorageError(IctError):
    """A location could not be read or written (missing bucket, denied, bad credentials...)."""


class DataError(IctError):
    """The dataset's layout or files are unusable."""


class ModelError(IctError):
    """The backbone or its weights are unusable."""


class OutputError(IctError):
    """The output location holds something we must not overwrite."""
