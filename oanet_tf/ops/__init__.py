"""Detection ops of the Mask R-CNN instance branch, as plain TensorFlow functions.

Boxes are float32 `(y1, x1, y2, x2)` in pixels, continuous coordinates (pixel row i spans
[i, i + 1)). Shapes are static and batched. Every function traces once inside `tf.function`
and runs under `tf.distribute`; all of them compile with `jit_compile=True` except
`nms.multiclass_nms` (CombinedNonMaxSuppression has no XLA kernel).

    anchors     multilevel anchor grids
    box_coder   Faster R-CNN box deltas: encode, decode, clip
    iou         pairwise IoU
    matcher     anchor / RoI to ground-truth matching (Detectron2 Matcher)
    sampling    balanced positive / negative sampling
    nms         batched and class-aware non-maximum suppression
    roi_align   FPN level assignment and multilevel RoIAlign (aligned=True)
    mask_ops    mask targets for RoIs, pasting RoI masks into the image
"""
