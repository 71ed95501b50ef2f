"""oanet_tf: OANet panoptic segmentation (Liu et al., CVPR 2019) in Keras 3 on TensorFlow."""

__version__ = "0.1.0"
