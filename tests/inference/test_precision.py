"""--precision auto: the choice from the CPU's flags and the GPUs' compute capabilities."""

import pytest

from oanet_tf.errors import OANetError
from oanet_tf.inference.precision import (AUTO, BFLOAT16, FLOAT32, choose_precision,
                                          resolve_precision)


@pytest.mark.parametrize("flags, expected", [
    (("avx2", "avx512f", "avx512_bf16"), BFLOAT16),  # AMD EPYC Zen 4
    (("avx2", "avx512f", "amx_bf16"), BFLOAT16),  # Intel Sapphire Rapids
    (("avx2", "avx512f"), FLOAT32),  # AVX-512 without bfloat16: emulated
    (("avx2",), FLOAT32),
    ((), FLOAT32),  # flags unreadable
])
def test_auto_on_a_cpu_follows_its_native_bfloat16(flags, expected):
    choice = choose_precision(AUTO, flags)
    assert (choice.requested, choice.precision) == (AUTO, expected)
    native = [f for f in flags if f in ("avx512_bf16", "amx_bf16")]
    assert all(f in choice.reason for f in native)


@pytest.mark.parametrize("capabilities, expected", [
    ([(8, 0)], BFLOAT16),  # A100
    ([(9, 0), (9, 0)], BFLOAT16),  # H100s
    ([(7, 5)], FLOAT32),  # T4: no bfloat16 tensor cores
    ([(8, 6), (7, 0)], FLOAT32),  # one older GPU decides for all replicas
])
def test_auto_on_gpus_follows_every_gpu_not_the_cpu(capabilities, expected):
    # the CPU's avx512_bf16 does not matter where the model runs on GPUs
    assert choose_precision(AUTO, ("avx512_bf16",), capabilities).precision == expected


@pytest.mark.parametrize("requested", [FLOAT32, BFLOAT16])
def test_an_explicit_precision_is_kept_whatever_the_machine(requested):
    assert choose_precision(requested, ("avx2",)).precision == requested
    assert choose_precision(requested, ("amx_bf16",), [(9, 0)]).precision == requested


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(OANetError, match="float16.*auto, float32, bfloat16"):
        choose_precision("float16")


def test_resolve_reads_this_machines_flags():
    from oanet_tf.environment import cpu_description

    flags = cpu_description()["flags"]
    choice = resolve_precision(AUTO)
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        assert choice == choose_precision(AUTO, flags)
    assert resolve_precision(FLOAT32).precision == FLOAT32
