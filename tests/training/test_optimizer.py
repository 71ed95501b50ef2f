"""SGDWithL2 against a numpy SGD + momentum + L2 update: the decay added to the gradient
before momentum (not Keras' decoupled decay), none on batch-norm parameters, Keras' momentum
convention, and the same steps inside a LossScaleOptimizer and a MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.config import load_config
from oanet_tf.training.optimizer import SGDWithL2
from oanet_tf.training.schedule import WarmupStepDecay, build_optimizer

MOMENTUM = 0.9
L2 = 0.05  # large, so that the decay shows well above float32 rounding
RATE = 0.1
STEPS = 2


def _model():
    """Dense (kernel, bias) then BatchNormalization (gamma, beta), fixed non-zero weights."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              keras.layers.BatchNormalization()])
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    return model


def _gradients(model):
    """Two steps of fixed gradients, one per trainable variable."""
    rng = np.random.default_rng(1)
    return [[rng.normal(size=v.shape).astype(np.float32) for v in model.trainable_variables]
            for _ in range(STEPS)]


def _decayed_by_layer(model):
    """The reference's choice, by layer type: every variable outside batch norm decays."""
    return [not isinstance(layer, keras.layers.BatchNormalization)
            for layer in model.layers for _ in layer.trainable_variables]


def _numpy_sgd(weights, gradients, decayed, rates, convention):
    """Weights after each step. keras: v = m v - lr (g + l2 w); w += v.
    pytorch (Detectron2): v = m v + (g + l2 w); w -= lr v."""
    weights = [w.astype(np.float64) for w in weights]
    velocity = [np.zeros_like(w) for w in weights]
    after = []
    for step_gradients, rate in zip(gradients, rates):
        for i, (w, g) in enumerate(zip(weights, step_gradients)):
            g = g.astype(np.float64) + (L2 * w if decayed[i] else 0.0)
            if convention == "keras":
                velocity[i] = MOMENTUM * velocity[i] - rate * g
                weights[i] = w + velocity[i]
            else:
                velocity[i] = MOMENTUM * velocity[i] + g
                weights[i] = w - rate * velocity[i]
        after.append([w.copy() for w in weights])
    return after


def _assert_steps(model, apply_step, gradients, expected):
    for step in range(STEPS):
        apply_step(gradients[step])
        for variable, want in zip(model.trainable_variables, expected[step]):
            np.testing.assert_allclose(variable.numpy(), want, rtol=1e-6, atol=1e-7,
                                       err_msg=f"{variable.path}, step {step + 1}")


def test_one_and_two_steps_match_numpy_sgd_momentum_l2():
    model = _model()
    start = [v.numpy() for v in model.trainable_variables]
    gradients = _gradients(model)
    decayed = _decayed_by_layer(model)
    assert decayed == [True, True, False, False]  # kernel, bias, gamma, beta
    expected = _numpy_sgd(start, gradients, decayed, [RATE] * STEPS, "keras")
    # With a constant rate both momentum conventions give the same steps.
    pytorch = _numpy_sgd(start, gradients, decayed, [RATE] * STEPS, "pytorch")
    for keras_step, pytorch_step in zip(expected, pytorch):
        for a, b in zip(keras_step, pytorch_step):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    optimizer = SGDWithL2(learning_rate=RATE, momentum=MOMENTUM, l2=L2)
    _assert_steps(model, lambda g: optimizer.apply(g, model.trainable_variables), gradients,
                  expected)


def test_l2_is_not_keras_decoupled_weight_decay():
    """Keras' SGD(weight_decay=) takes the same first step but not the same second one on
    the decayed weights: its decay does not go through momentum."""
    model, decoupled = _model(), _model()
    gradients = _gradients(model)
    ours = SGDWithL2(learning_rate=RATE, momentum=MOMENTUM, l2=L2)
    keras_sgd = keras.optimizers.SGD(learning_rate=RATE, momentum=MOMENTUM, weight_decay=L2)
    keras_sgd.exclude_from_weight_decay(var_names=["gamma", "beta"])
    for step_gradients in gradients:
        ours.apply(step_gradients, model.trainable_variables)
        keras_sgd.apply(step_gradients, decoupled.trainable_variables)
    for a, b, decays in zip(model.trainable_variables, decoupled.trainable_variables,
                            _decayed_by_layer(model)):
        assert np.allclose(a.numpy(), b.numpy(), rtol=1e-6) != decays, a.name


def test_decay_over_100_steps_without_gradient_matches_numpy():
    """The paper's rates (lr 0.02, momentum 0.9, wd 1e-4): over 100 steps of zero gradient
    the weight shrinks as the numpy L2 + momentum recursion says, about 10 times as much
    as under Keras' decoupled decay, (1 - lr wd)^100."""
    rate, l2, steps = 0.02, 1e-4, 100
    weight = keras.Variable(np.ones(1, np.float32), name="kernel")
    optimizer = SGDWithL2(learning_rate=rate, momentum=MOMENTUM, l2=l2)
    w, v = 1.0, 0.0
    for _ in range(steps):
        optimizer.apply([np.zeros(1, np.float32)], [weight])
        v = MOMENTUM * v - rate * l2 * w
        w += v
    shrink = 1.0 - float(weight.numpy()[0])
    assert shrink == pytest.approx(1.0 - w, rel=1e-3)
    decoupled_shrink = 1.0 - (1.0 - rate * l2) ** steps
    print(f"shrink over {steps} steps: L2 in the gradient {shrink:.3e}, "
          f"decoupled {decoupled_shrink:.3e}, ratio {shrink / decoupled_shrink:.2f}")
    assert shrink > 5 * decoupled_shrink


def test_momentum_follows_keras_convention_across_a_rate_change():
    """At a change of rate the two conventions part: ours is Keras' (the velocity keeps the
    rate it was accumulated with)."""
    model = _model()
    start = [v.numpy() for v in model.trainable_variables]
    gradients = _gradients(model)
    decayed = _decayed_by_layer(model)
    schedule = WarmupStepDecay(RATE, RATE, 0, (1,), 0.1)  # RATE at step 0, RATE / 10 after
    rates = [float(schedule(step)) for step in range(STEPS)]
    assert rates == pytest.approx([RATE, RATE / 10])
    expected = _numpy_sgd(start, gradients, decayed, rates, "keras")
    pytorch = _numpy_sgd(start, gradients, decayed, rates, "pytorch")
    assert not np.allclose(expected[-1][0], pytorch[-1][0], rtol=1e-3)
    optimizer = SGDWithL2(learning_rate=schedule, momentum=MOMENTUM, l2=L2)
    _assert_steps(model, lambda g: optimizer.apply(g, model.trainable_variables), gradients,
                  expected)


def test_same_steps_inside_a_loss_scale_optimizer():
    model = _model()
    start = [v.numpy() for v in model.trainable_variables]
    gradients = _gradients(model)
    expected = _numpy_sgd(start, gradients, _decayed_by_layer(model), [RATE] * STEPS, "keras")
    optimizer = keras.optimizers.LossScaleOptimizer(
        SGDWithL2(learning_rate=RATE, momentum=MOMENTUM, l2=L2))
    scale = optimizer.initial_scale  # the wrapper divides the gradients by it
    _assert_steps(model, lambda g: optimizer.apply([x * scale for x in g],
                                                   model.trainable_variables),
                  gradients, expected)


def test_same_steps_under_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _model()
        optimizer = SGDWithL2(learning_rate=RATE, momentum=MOMENTUM, l2=L2)
        optimizer.build(model.trainable_variables)
    start = [v.numpy() for v in model.trainable_variables]
    gradients = _gradients(model)
    expected = _numpy_sgd(start, gradients, _decayed_by_layer(model), [RATE] * STEPS, "keras")

    @tf.function
    def step(step_gradients):
        def replica_step():  # the gradients of a replica live on its device, as in training
            optimizer.apply([tf.identity(g) for g in step_gradients], model.trainable_variables)
        strategy.run(replica_step)

    _assert_steps(model, lambda g: step([tf.constant(x) for x in g]), gradients, expected)


def test_round_trips_through_keras_serialization():
    optimizer = SGDWithL2(learning_rate=WarmupStepDecay(0.02, 0.002, 10, (50,)),
                          momentum=MOMENTUM, l2=1e-4)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(clone) is SGDWithL2
    assert clone.get_config() == optimizer.get_config()
    assert clone.l2 == 1e-4 and clone.weight_decay is None
    with pytest.raises(ValueError, match="decays through `l2`"):
        SGDWithL2(l2=1e-4, weight_decay=1e-4)


def test_build_optimizer_uses_l2_from_the_config():
    config = load_config("configs/coco_r50.yaml")
    optimizer = build_optimizer(config.train)
    assert type(optimizer) is SGDWithL2
    assert optimizer.l2 == config.train.weight_decay == 1e-4
    assert optimizer.weight_decay is None  # no decoupled decay on top
    wrapped = build_optimizer(load_config("configs/coco_r50.yaml",
                                          ["train.mixed_precision=mixed_float16"]).train)
    assert type(wrapped.inner_optimizer) is SGDWithL2
