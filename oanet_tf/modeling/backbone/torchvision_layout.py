"""torchvision's ResNet architecture, as the shapes of its state dict describe it: blocks per
stage, bottleneck widths (each block's output EXPANSION times wider), the stem.

Plain constants, no imports: `torchvision_resnet` builds the network from them and
`oanet_tf.conversion.torchvision_state` (numpy only, also run beside torch without
TensorFlow) lists the state dict's names and shapes from them.
"""

RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
STEM_CHANNELS, STEM_KERNEL, EXPANSION = 64, 7, 4
STAGE_WIDTHS = (64, 128, 256, 512)
