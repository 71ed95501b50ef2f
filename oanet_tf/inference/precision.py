"""The precision inference computes in: float32, bfloat16, or auto (bfloat16 where the
hardware computes it natively, float32 elsewhere, where bfloat16 is emulated and slower).

TensorFlow is imported only to list GPUs, and only for auto.
"""

from __future__ import annotations

import dataclasses

from oanet_tf.environment import cpu_description
from oanet_tf.errors import OANetError

FLOAT32, BFLOAT16, AUTO = "float32", "bfloat16", "auto"
# Inference precision -> Keras dtype policy. bfloat16 computes the layers in bfloat16 from the
# float32 weights, but for DECISION_LAYER_DTYPE's (config.py); the heads' outputs are cast to
# float32 before softmax, box decoding, NMS and the merge (docs/precision.md).
INFERENCE_POLICIES = {FLOAT32: "float32", BFLOAT16: "mixed_bfloat16"}
PRECISION_CHOICES = (AUTO, *INFERENCE_POLICIES)
# CPU flags (/proc/cpuinfo) of a native bfloat16 dot product: AVX512_BF16 (AMD Zen 4 and
# later, Intel Cooper Lake) and AMX (Intel Sapphire Rapids and later).
NATIVE_BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA GPUs compute bfloat16 in their tensor cores from compute capability 8.0 (Ampere).
BFLOAT16_GPU_CAPABILITY = (8, 0)


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """What was asked, what runs, and why (printed by the commands, kept in metrics.json)."""

    requested: str
    precision: str
    reason: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_precision(requested: str, cpu_flags=(), gpu_capabilities=()) -> PrecisionChoice:
    """`requested` as is, or for auto: bfloat16 when every GPU has BFLOAT16_GPU_CAPABILITY, or,
    without GPUs, when the CPU has one of NATIVE_BFLOAT16_CPU_FLAGS; float32 otherwise.
    gpu_capabilities: (major, minor) of each GPU the model would run on."""
    if requested not in PRECISION_CHOICES:
        raise OANetError(f"precision {requested!r}: must be one of "
                         f"{', '.join(PRECISION_CHOICES)}")
    if requested != AUTO:
        return PrecisionChoice(requested, requested, "as requested")
    if gpu_capabilities:
        capable = all(tuple(c) >= BFLOAT16_GPU_CAPABILITY for c in gpu_capabilities)
        wanted = ".".join(map(str, BFLOAT16_GPU_CAPABILITY))
        if capable:
            return PrecisionChoice(AUTO, BFLOAT16,
                                   f"every GPU has compute capability >= {wanted}")
        return PrecisionChoice(AUTO, FLOAT32, f"a GPU below compute capability {wanted}")
    native = [flag for flag in NATIVE_BFLOAT16_CPU_FLAGS if flag in cpu_flags]
    if native:
        return PrecisionChoice(AUTO, BFLOAT16, f"the CPU has {' and '.join(native)}")
    return PrecisionChoice(AUTO, FLOAT32, f"the CPU has none of "
                                          f"{', '.join(NATIVE_BFLOAT16_CPU_FLAGS)}")


def resolve_precision(requested: str) -> PrecisionChoice:
    """choose_precision on this machine's CPU flags and GPUs (read only for auto)."""
    if requested != AUTO:
        return choose_precision(requested)
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return choose_precision(AUTO, cpu_description()["flags"], capabilities)
