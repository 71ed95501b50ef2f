"""Multiply-adds counted from the Keras layers' input and output shapes, as a layer runs them:
record_shapes patches every Conv2D, Conv2DTranspose, DepthwiseConv2D and Dense under a
layer to note the shapes it is called on, while a function traces; layer_macs turns one
call's shapes into multiply-adds:

  conv            prod(output shape but channels) * k_h * k_w * C_in / groups * C_out
  transposed conv prod(input shape but channels) * k_h * k_w * C_in * C_out
  depthwise conv  prod(output shape but channels) * k_h * k_w * C_out
  dense           prod(input shape but features) * in * out (each row, e.g. each RoI)

Everything else (batch norm, activations, pooling, resizes, gathers) counts 0."""

from __future__ import annotations

import contextlib
import math


def _dims(shape) -> list:
    dims = [None if d is None else int(d) for d in shape]
    if any(d is None for d in dims):
        raise ValueError(f"shape {shape} is not static: trace with static shapes")
    return dims


def layer_macs(layer, input_shape, output_shape) -> int:
    """Multiply-adds of one call of `layer` (a Keras layer) on input_shape -> output_shape;
    0 for the layers that do not multiply weights (see the module's docstring)."""
    import keras

    inputs, outputs = _dims(input_shape), _dims(output_shape)
    if isinstance(layer, keras.layers.Dense):
        return math.prod(inputs[:-1]) * inputs[-1] * outputs[-1]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return math.prod(outputs[:-1]) * kh * kw * outputs[-1]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        return math.prod(inputs[:-1]) * kh * kw * inputs[-1] * outputs[-1]
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        groups = getattr(layer, "groups", 1) or 1
        return math.prod(outputs[:-1]) * kh * kw * inputs[-1] // groups * outputs[-1]
    return 0


def _counted_layers(root) -> list:
    import keras

    kinds = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose,
             keras.layers.DepthwiseConv2D)
    layers = [root] if isinstance(root, kinds) else []
    return layers + [layer for layer in root._flatten_layers(include_self=False)
                     if isinstance(layer, kinds)]


@contextlib.contextmanager
def record_shapes(*roots):
    """While open, every counted layer under `roots` (Keras layers) appends (layer,
    input shape, output shape) to the yielded list at each call (eager or traced)."""
    calls, patched = [], []
    for root in roots:
        for layer in _counted_layers(root):
            if "call" in vars(layer):
                continue  # reached twice
            original = layer.call

            def call(inputs, *args, _layer=layer, _original=original, **kwargs):
                outputs = _original(inputs, *args, **kwargs)
                calls.append((_layer, tuple(inputs.shape), tuple(outputs.shape)))
                return outputs

            object.__setattr__(layer, "call", call)
            patched.append(layer)
    try:
        yield calls
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


def traced_macs(function, args, *roots) -> int:
    """Multiply-adds of the counted layers under `roots` when `function(*args)` runs, from
    a trace of it (nothing is computed). The layers must be built: Keras runs an unbuilt
    layer's `call` once more while building it."""
    import tensorflow as tf

    with record_shapes(*roots) as calls:
        tf.function(function).get_concrete_function(*args)
    return sum(layer_macs(*call) for call in calls)
