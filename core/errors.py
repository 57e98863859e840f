"""User-facing errors: every failure a user can cause or fix is one of these, with a message
that says what is wrong and what to do."""


class BackdropError(Exception):
    """Base class: the CLI prints the message and exits non-zero; the app shows it."""


class InputError(BackdropError):
    """The image, mask or a parameter is unusable (unreadable, too large, wrong size...)."""


class ModelMissingError(BackdropError):
    """Weights a stage needs are not available locally and cannot be downloaded."""


class Cancelled(BackdropError):
    """The caller's cancel hook asked the run to stop."""


class OutputError(BackdropError):
    """A file could not be written where the user asked (a folder, a device, a full disk...)."""
