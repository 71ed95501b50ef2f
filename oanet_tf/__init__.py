"""oanet_tf: OANet panoptic segmentation (Liu et al., CVPR 2019) in Keras 3 on TensorFlow."""

# The one definition of the version: pyproject.toml reads it (dynamic version), `--version`
# prints it and environment.json records it, so an editable install whose metadata is older
# than its source still reports the code that runs.
__version__ = "0.1.0"
