"""Timing: medians, timed calls, and variants interleaved call by call so that every variant
sees the same machine load. TensorFlow is imported inside the functions that need it (the
torchvision peer imports this module)."""

from __future__ import annotations

import statistics
import time


def median(values):
    return statistics.median(values) if values else float("nan")


def timed_calls(call, count: int) -> list:
    """Wall seconds of `count` calls of a zero-argument callable."""
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def timed(function, *args, **kwargs):
    """(wall seconds, value) of one call."""
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def interleaved(ours_call, peer_time, warmup: int, repeats: int):
    """Warm-up calls of each, then alternating timed calls -> (ours seconds, peer seconds).
    peer_time(count) times the peer's prepared case (TorchClient.time); None: ours only."""
    for _ in range(warmup):
        ours_call()
        if peer_time:
            peer_time(1)
    ours, theirs = [], []
    for _ in range(repeats):
        ours.extend(timed_calls(ours_call, 1))
        if peer_time:
            theirs.extend(peer_time(1))
    return ours, theirs


def synced(call):
    """Call and wait for the device: fetch one element of the first output."""
    import tensorflow as tf

    first = tf.nest.flatten(call())[0]
    tf.reshape(first, [-1])[:1].numpy()


def alternating(functions: dict, inputs, warmup: int, repeats: int) -> dict:
    """{variant: [seconds]} of functions[variant](*inputs), the variants alternating call by
    call (their order flipped every round); warmup rounds untimed."""
    seconds = {variant: [] for variant in functions}
    for round_index in range(warmup + repeats):
        order = list(functions) if round_index % 2 == 0 else list(functions)[::-1]
        for variant in order:
            start = time.perf_counter()
            synced(lambda: functions[variant](*inputs))
            if round_index >= warmup:
                seconds[variant].append(time.perf_counter() - start)
    return seconds


def graph_function(function):
    """tf.function without AutoGraph: the timed parts are plain TF code, and AutoGraph
    cannot read the source of lambdas defined side by side."""
    import tensorflow as tf

    return tf.function(function, autograph=False)
