"""The builder: each component's config section becomes its constructor's arguments whole
(a field's name is the argument's), and the backbone settings: a pretrained ResNet's frozen
layout follows model.backbone.freeze_at, and a model built for a trained model's weights reads
no backbone file (the file it started from may be gone). The freezing itself over a train
step is tested in tests/modeling/backbone/test_resnet.py."""

import dataclasses

from oanet_tf.config import RESNET50
from oanet_tf.modeling.builder import build_oanet
from tests.tiny_model import CATEGORIES, tiny_config

# The components built from a section of model.* of the same name.
COMPONENTS = ("fpn", "rpn", "roi_heads", "stuff_branch", "srm")
# Settings of every kind (number, choice, switch) away from their defaults.
CHANGED = ("model.rpn.nms_threshold=0.6", "model.rpn.anchor_cells=torchvision",
           "model.rpn.nms_per_level=false", "model.rpn.min_box_size=0.5",
           "model.roi_heads.test_min_box_size=0.25", "model.roi_heads.unused_class_slots=2",
           "model.roi_heads.roi_align_aligned=false", "model.stuff_branch.channels=12",
           "model.stuff_branch.supervision=stuff_plus_things", "model.srm.kernel=3x3",
           "model.srm.stride=2", "model.fpn.channels=24")


def test_every_field_of_a_section_reaches_its_component():
    config = tiny_config(*CHANGED)
    net = build_oanet(config.model, config.train, CATEGORIES)
    for component in COMPONENTS:
        section = getattr(config.model, component)
        layer_config = getattr(net, component).get_config()
        for name, value in dataclasses.asdict(section).items():
            got = layer_config[name]
            assert (tuple(got) if isinstance(value, tuple) else got) == value, \
                f"model.{component}.{name}"
    assert net.stuff_fpn is None and net.stuff_branch.supervision == "stuff_plus_things"


def test_built_for_trained_weights_reads_no_backbone_file(tmp_path):
    missing = str(tmp_path / "gone.h5")  # the file a trained model started from, since moved
    config = tiny_config(f"model.backbone.name={RESNET50}", f"model.backbone.weights={missing}",
                         "model.backbone.freeze_at=2")
    net = build_oanet(config.model, config.train, CATEGORIES, load_backbone_weights=False)
    stages = net.backbone.get_layer(f"{RESNET50}_stages")
    assert not stages.get_layer("conv2_block1_1_conv").trainable  # the same frozen layout
    assert stages.get_layer("conv3_block1_1_conv").trainable
