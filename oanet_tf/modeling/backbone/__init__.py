"""Backbones: images [B, H, W, 3] (RGB, 0..255) -> [C2, C3, C4, C5] at strides 4, 8, 16, 32.

Import the modules themselves (`resnet`, `small_resnet`): this package imports nothing, so
`torchvision_layout` (plain constants) loads without Keras.
"""
