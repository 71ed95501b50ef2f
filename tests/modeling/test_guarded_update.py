"""oanet_tf.modeling.guarded_update: an optimizer step taken only when every replica's values are
finite, against hand-computed SGD updates; in one process, and under MirroredStrategy over two
logical CPU devices (a subprocess, tests/scripts/guarded_update_replicas.py)."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling.guarded_update import all_replicas_finite, apply_if, restore_unless

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                      "guarded_update_replicas.py")
NAN, INF = float("nan"), float("inf")
GRADIENT = [0.25, -1.0]


def _sgd(momentum=0.0):
    weight = keras.Variable([1.0, 2.0])
    optimizer = keras.optimizers.SGD(learning_rate=0.5, momentum=momentum)
    optimizer.build([weight])
    return weight, optimizer


@pytest.mark.parametrize("values, expected", [
    ([[1.0, 2.0], 3.0], True),
    ([[1.0, NAN], 3.0], False),
    ([[1.0, 2.0], INF], False),
    ([[-INF]], False),
    ([None, [0.0]], True),  # None entries (a variable without gradient) are ignored
    ([None, [NAN]], False),
    ([], True),
], ids=["finite", "nan", "inf", "minus_inf", "none_ignored", "none_and_nan", "empty"])
def test_all_replicas_finite_in_one_replica(values, expected):
    tensors = [None if v is None else tf.constant(v) for v in values]
    finite = all_replicas_finite(tensors)
    assert finite.dtype == tf.bool and finite.shape == ()
    assert bool(finite) is expected
    assert bool(tf.function(all_replicas_finite)(tensors)) is expected


@pytest.mark.parametrize("graph", [False, True])
def test_apply_if_applies_or_skips_a_plain_sgd_step(graph):
    weight, optimizer = _sgd()

    def step(condition):
        apply_if(optimizer, condition, [tf.constant(GRADIENT)], [weight])

    step = tf.function(step) if graph else step
    step(tf.constant(False))
    np.testing.assert_array_equal(weight.numpy(), [1.0, 2.0])
    assert int(optimizer.iterations) == 0
    step(tf.constant(True))
    # w - lr * g = (1 - 0.5 * 0.25, 2 + 0.5 * 1)
    np.testing.assert_allclose(weight.numpy(), [0.875, 2.5])
    assert int(optimizer.iterations) == 1


def test_skipped_step_leaves_momentum_and_iterations_as_they_were():
    weight, optimizer = _sgd(momentum=0.9)

    @tf.function
    def guarded_step(gradient):
        apply_if(optimizer, all_replicas_finite([gradient]), [gradient], [weight])

    guarded_step(tf.constant(GRADIENT))  # m = -lr g = (-0.125, 0.5); w += m
    np.testing.assert_allclose(weight.numpy(), [0.875, 2.5])
    guarded_step(tf.constant([NAN, 1.0]))  # skipped: nothing moves, NaN reaches nothing
    np.testing.assert_allclose(weight.numpy(), [0.875, 2.5])
    assert int(optimizer.iterations) == 1
    guarded_step(tf.constant(GRADIENT))
    # m = 0.9 (-0.125, 0.5) - 0.5 (0.25, -1) = (-0.2375, 0.95): the momentum of step 1 only.
    np.testing.assert_allclose(weight.numpy(), [0.875 - 0.2375, 2.5 + 0.95])
    assert int(optimizer.iterations) == 2


@pytest.mark.parametrize("condition, expected", [(True, [[5.0, 6.0], [7.0]]),
                                                 (False, [[1.0, 2.0], [3.0]])])
def test_restore_unless(condition, expected):
    variables = [keras.Variable([5.0, 6.0], trainable=False),
                 keras.Variable([7.0], trainable=False)]
    restore_unless(tf.constant(condition), variables, [tf.constant([1.0, 2.0]),
                                                       tf.constant([3.0])])
    for variable, want in zip(variables, expected):
        np.testing.assert_array_equal(variable.numpy(), want)


def test_under_mirrored_strategy_a_nan_on_one_replica_skips_every_replica():
    result = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["learning_rate"] == 0.5
    # Gradients (0.25, -1) and (0.75, 3) are summed across replicas: w - 0.5 (1, 2).
    applied = [1.0 - 0.5 * (0.25 + 0.75), 2.0 - 0.5 * (-1.0 + 3.0)]
    finite = report["finite"]
    assert finite["decided"] == [True, True] and finite["iterations"] == 1
    assert finite["weight"] == [applied, applied]
    assert finite["state"] == [[5.0, 6.0], [5.0, 6.0]]  # what the step wrote is kept
    # A NaN on the second replica only: both skip, the step's write (7, 8) is undone.
    skipped = report["nan_on_one_replica"]
    assert skipped["decided"] == [False, False] and skipped["iterations"] == 1
    assert skipped["weight"] == [applied, applied]
    assert skipped["state"] == [[5.0, 6.0], [5.0, 6.0]]
    assert not any(math.isnan(v) for row in skipped["weight"] for v in row)
