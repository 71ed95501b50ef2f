"""Errors a user can act on. The CLI prints them as one line instead of a traceback."""

from __future__ import annotations

# How TensorFlow reports a failed `tf.debugging.Assert`: this prefix, then its data in
# brackets. The checks of bad input inside graphs (serving, the input pipeline) put one
# message there that names the item and the problem.
ASSERTION_PREFIX = "assertion failed: ["
ASSERTION_SUFFIX = "]"
GRAPH_ERROR_HEADER = "Graph execution error:"  # TensorFlow's first line, without the reason


class OANetError(Exception):
    """Base class of errors caused by the user's input (files, configs, arguments)."""


class ConfigError(OANetError, ValueError):
    """A configuration file or override is malformed."""


class DatasetError(OANetError, ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


class NonFiniteLossError(OANetError):
    """Training stopped at a step whose loss or gradients were NaN or Inf
    (train.on_nonfinite_loss: stop); the message says which step and what is intact."""


class TrainingStopped(Exception):
    """Training stopped on SIGTERM or SIGINT after step `step`, whose backup was written: the
    same command resumes there. Not an error of the user's; the CLI exits with its own code."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def failed_assertion(message: str) -> str | None:
    """The message of the first failed `tf.debugging.Assert` in a TensorFlow error's text
    (an exception raised inside a graph loses its type; its words survive there), or None."""
    start = message.find(ASSERTION_PREFIX)
    if start < 0:
        return None
    line = message[start + len(ASSERTION_PREFIX):].split("\n", 1)[0].rstrip()
    return line[:-len(ASSERTION_SUFFIX)] if line.endswith(ASSERTION_SUFFIX) else line


def graph_error_reason(message: str) -> str:
    """The reason in a TensorFlow error's text: the failed check's message, else its first
    line besides TensorFlow's header."""
    checked = failed_assertion(message)
    if checked is not None:
        return checked
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and line.strip() != GRAPH_ERROR_HEADER]
    return lines[0] if lines else message
