"""User-facing errors: one line that names the culprit and says what to do."""


class LeukonetError(Exception):
    """An error caused by the user's input, shown as one line without a traceback.

    The CLI prints ``error: <message>`` and exits with status 2. The message must name
    the file, row or option at fault and what to do about it.
    """


class ImageError(LeukonetError):
    """An image that cannot be turned into an RGB array."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
