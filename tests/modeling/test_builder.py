"""The builder's backbone settings: a pretrained ResNet's frozen layout follows
model.backbone_freeze_at, and a model built for a trained model's weights reads no backbone
file (the file it started from may be gone). The freezing itself over a train step is tested
in tests/modeling/backbone/test_resnet.py."""

from oanet_tf.config import RESNET50
from oanet_tf.modeling.builder import build_oanet
from tests.tiny_model import CATEGORIES, tiny_config


def test_built_for_trained_weights_reads_no_backbone_file(tmp_path):
    missing = str(tmp_path / "gone.h5")  # the file a trained model started from, since moved
    config = tiny_config(f"model.backbone={RESNET50}", f"model.backbone_weights={missing}",
                         "model.backbone_freeze_at=2")
    net = build_oanet(config.model, config.train, CATEGORIES, load_backbone_weights=False)
    stages = net.backbone.get_layer(f"{RESNET50}_stages")
    assert not stages.get_layer("conv2_block1_1_conv").trainable  # the same frozen layout
    assert stages.get_layer("conv3_block1_1_conv").trainable
