"""One exception type for every user-facing problem, so the CLI and notebooks can show one clear line."""


class FpnlabError(Exception):
    """A problem with the user's input (a path, a file, an option) explained in one sentence."""


class DataError(FpnlabError, ValueError):
    """A dataset, image or annotation file that cannot be used; the message names the file."""
