"""The switches torchvision's Mask R-CNN needs (configs/coco_r50_torchvision.yaml): each
serializes, and each does what torchvision does (checked by hand here; the model as a whole is
checked against torchvision's detections in tests/conversion)."""

import keras
import numpy as np
import tensorflow as tf

from oanet_tf.modeling.backbone.resnet import ImageNetRGBPreprocess, build_resnet_backbone
from oanet_tf.modeling.box_head import BoxHead
from oanet_tf.modeling.roi_heads import RoIHeads
from oanet_tf.modeling.rpn import RPN
from oanet_tf.ops import anchors
from tests.modeling.layer_checks import H, W, pyramid

TORCHVISION_RPN = dict(anchor_offset=0.0, anchor_cells="torchvision", nms_per_level=False,
                       min_box_size=1e-3)
TORCHVISION_HEADS = dict(roi_align_aligned=False, test_min_box_size=1e-2,
                         unused_class_slots=3)


def _rpn(**overrides):
    return RPN(conv_channels=8, anchor_sizes=(32, 64, 128, 256, 512),
               anchor_aspect_ratios=(0.5, 1.0, 2.0), iou_thresholds=(0.3, 0.7),
               batch_size_per_image=16, positive_fraction=0.5, pre_nms_topk_train=20,
               post_nms_topk_train=10, pre_nms_topk_test=20, post_nms_topk_test=10,
               nms_threshold=0.7, static_shapes=False, **overrides)


def _heads(**overrides):
    heads = RoIHeads(num_things=2, box_head_fc_dim=16, box_head_num_fc=2,
                     mask_head_conv_dim=8, mask_head_num_conv=1, batch_size_per_image=16,
                     positive_fraction=0.25, iou_threshold=0.5,
                     box_coder_weights=(10.0, 10.0, 5.0, 5.0), box_pooler_resolution=7,
                     mask_pooler_resolution=14, pooler_sampling_ratio=2,
                     test_score_threshold=0.05, test_nms_threshold=0.5,
                     detections_per_image=5, static_shapes=False, **overrides)
    heads.build((None, H // 4, W // 4, 8))
    return heads


def test_new_options_round_trip():
    for layer in (_rpn(**TORCHVISION_RPN), _heads(**TORCHVISION_HEADS),
                  BoxHead(2, 16, 1, unused_class_slots=3), ImageNetRGBPreprocess()):
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer))
        assert restored.get_config() == layer.get_config()
    assert _heads(**TORCHVISION_HEADS).box_head.num_logits == 2 + 1 + 3


def test_torchvision_cells_by_hand():
    """torchvision's AnchorGenerator for an 800 x 1216 canvas: rounded half sides, offset 0,
    and P6's stride 800 // 13 = 61 down, 1216 // 19 = 64 across."""
    levels = anchors.multilevel_anchors((800, 1216), 2, 6, (32, 64, 128, 256, 512),
                                        (0.5, 1.0, 2.0), offset=0.0, cells="torchvision")
    first = levels[0].numpy()[:3]  # location (0, 0): ratios 0.5, 1, 2 of size 32
    np.testing.assert_array_equal(first, [[-11, -23, 11, 23], [-16, -16, 16, 16],
                                          [-23, -11, 23, 11]])
    p6 = levels[4].numpy().reshape(13, 19, 3, 4)
    assert p6[1, 0, 1, 0] - p6[0, 0, 1, 0] == 61 and p6[0, 1, 1, 1] - p6[0, 0, 1, 1] == 64
    exact = anchors.multilevel_anchors((800, 1216), 2, 6, (32, 64, 128, 256, 512),
                                       (0.5, 1.0, 2.0))
    exact_p6 = exact[4].numpy().reshape(13, 19, 3, 4)
    assert exact_p6[1, 0, 1, 0] - exact_p6[0, 0, 1, 0] == 64


def test_rpn_minimum_size_drops_thin_proposals():
    """A proposal thinner than min_box_size never comes out (torchvision's remove_small_boxes)."""
    rpn = _rpn(min_box_size=40.0)
    features = pyramid(channels=8, batch=1, levels=5)
    logits, deltas = rpn(features)
    boxes, _, valid = rpn.proposals(logits, deltas, (H, W), tf.constant([[H, W]]),
                                    training=False)
    sides = (boxes[..., 2:] - boxes[..., :2]).numpy()[valid.numpy()]
    assert (sides >= 40.0).all()


def test_unused_slots_share_the_softmax_but_are_never_detected():
    heads = _heads(unused_class_slots=3)
    features = pyramid(channels=8, batch=1)
    features = features + [tf.nn.max_pool2d(features[-1], 1, 2, "VALID")]
    proposals = tf.constant([[[4.0, 4.0, 40.0, 60.0], [10.0, 20.0, 50.0, 90.0]]])
    kernel, bias = heads.box_head.cls.get_weights()
    bias[3:] = 50.0  # the unused slots take all the probability
    heads.box_head.cls.set_weights([kernel * 0, bias])
    found = heads.detect(features, proposals, tf.constant([[True, True]]),
                         tf.constant([[H, W]]))
    assert int(found["num_detections"][0]) == 0


def test_stride_in_3x3_backbone_halves_like_torchvision():
    """Torchvision's layout: strides 4..32 at odd sizes too (PyTorch's symmetric padding),
    batch norm frozen with pretrained-like settings, no bias in convolutions."""
    backbone = build_resnet_backbone("resnet50", None, frozen_stages=2, frozen_norm=True,
                                     stride_in="3x3", pixel_normalization="imagenet_rgb")
    outputs = backbone(tf.zeros([1, 97, 65, 3]))
    # PyTorch: conv1 (97 + 6 - 7) // 2 + 1 = 49, pool 25, then 25, 13, 7, 4 rows.
    assert [tuple(o.shape[1:3]) for o in outputs] == [(25, 17), (13, 9), (7, 5), (4, 3)]
    stages = backbone.get_layer("resnet50_stages")
    assert not stages.get_layer("layer1_0_conv2").trainable
    assert stages.get_layer("layer2_0_conv2").trainable
    assert not stages.get_layer("layer4_2_bn3").trainable
    assert stages.get_layer("layer2_0_conv2").strides == (2, 2)
    assert stages.get_layer("layer2_0_conv1").strides == (1, 1)
    assert not stages.get_layer("conv1").use_bias
