"""Errors a user can act on. The CLI prints them as one line instead of a traceback."""


class OANetError(Exception):
    """Base class of errors caused by the user's input (files, configs, arguments)."""


class ConfigError(OANetError, ValueError):
    """A configuration file or override is malformed."""


class DatasetError(OANetError, ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


class NonFiniteLossError(OANetError):
    """Training stopped at a step whose loss or gradients were NaN or Inf
    (train.on_nonfinite_loss: stop); the message says which step and what is intact."""
