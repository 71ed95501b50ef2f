"""The keras.applications ResNet backbones: Caffe preprocessing."""

import numpy as np
import tensorflow as tf

from oanet_tf.modeling.backbone.resnet import CAFFE_BGR_MEAN, CaffePreprocess


def test_caffe_preprocess_hand_case():
    out = CaffePreprocess()(tf.constant([[[[10.0, 20.0, 30.0]]]]))
    np.testing.assert_allclose(out[0, 0, 0], np.array([30.0, 20.0, 10.0]) - CAFFE_BGR_MEAN,
                               rtol=1e-6)
