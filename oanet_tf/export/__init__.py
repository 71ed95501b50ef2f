"""Export a trained OANet as a SavedModel for TF Serving."""

from oanet_tf.export.saved_model import export_saved_model

__all__ = ["export_saved_model"]
