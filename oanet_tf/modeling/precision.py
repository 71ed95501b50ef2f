"""The layers that stay float32 when the model computes in a mixed precision.

The RPN's objectness and deltas and the box head's class logits and deltas decide which
proposals survive NMS, the detection scores and the boxes. With them in bfloat16, the demo
model's ownership accuracy moved by 1.2 points from float32, beyond what +-0.5 grey-level
input noise moves it; in float32 (two 1x1 convolutions and two dense layers, little compute)
every PQ and ownership number of that model stayed within 0.3 (README, "bfloat16
inference", which also gives a model where they did not). The other output layers (mask
logits, stuff classifier, the SRM) changed nothing measurable.
"""

DECISION_LAYER_DTYPE = "float32"
