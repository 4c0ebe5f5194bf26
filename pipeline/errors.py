"""The one exception type the CLI turns into a one-line reason and a non-zero exit."""


class PrepError(Exception):
    """Unusable input or configuration; the message is shown to the user as is."""
