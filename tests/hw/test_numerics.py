"""The shared definitions of docs/numerics.md (``hw/numerics.py``) against independent
descriptions: the tables as NumPy computes them from their formulas, and the KV record
size of the configs against the record's gateware layout."""

import dataclasses

import numpy as np
import pytest

from tritium.hw import numerics
from tritium.hw.attention.kvcache import kv_layout
from tritium.hw.config import ACCELERATOR_PRESETS, MODEL_PRESETS, AttentionConfig, kv_record_bits
from tritium.hw.layouts import kv_record_layout
from tritium.hw.memory.port import MemoryConfig


def test_rom_tables_follow_their_formulas():
    assert numerics.RECIP_TABLE == tuple(np.rint(2.0 ** 30 / np.arange(128, 257)).astype(int))
    assert numerics.RSQRT_TABLE == tuple(
        np.rint(2.0 ** 30 / np.sqrt(np.arange(64, 257))).astype(int))
    assert numerics.EXP2_TABLE == tuple(
        np.rint(2.0 ** 15 * 2.0 ** (-np.arange(256) / 256)).astype(int))
    assert numerics.SIGMOID_TABLE == tuple(
        np.rint(2.0 ** 15 / (1.0 + np.exp(16.0 - np.arange(513) / 16))).astype(int))
    # The widths docs/numerics.md gives them.
    assert max(numerics.RECIP_TABLE).bit_length() == 24          # its first entry is 2**23
    assert max(numerics.RSQRT_TABLE).bit_length() == 28
    assert max(numerics.EXP2_TABLE + numerics.SIGMOID_TABLE).bit_length() == 16


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_rope_table_follows_its_formula(name):
    model = MODEL_PRESETS[name]
    half = model.head_dim // 2
    inverse = model.rope_theta ** (-np.arange(0, model.head_dim, 2, dtype=np.float64)
                                   / model.head_dim)
    angles = np.arange(model.max_context, dtype=np.float64)[:, None] * inverse[None, :]
    cos, sin = numerics.rope_table(model.max_context, model.head_dim, model.rope_theta)
    assert np.array_equal(np.array(cos), np.rint(np.cos(angles) * 2 ** 14))
    assert np.array_equal(np.array(sin), np.rint(np.sin(angles) * 2 ** 14))
    assert np.array(cos).shape == (model.max_context, half)


@pytest.mark.parametrize("head_dim", [2, 32, 96, 128, 256])
def test_kv_record_bits_is_the_record_layout(head_dim):
    config = AttentionConfig(head_dim=head_dim, heads=4, kv_heads=2, dims_per_cycle=2)
    assert kv_record_bits(head_dim) == kv_record_layout(config).size


@pytest.mark.parametrize("name", sorted(ACCELERATOR_PRESETS))
def test_each_preset_sizes_its_kv_cache_as_the_attention_unit_lays_it_out(name):
    config = ACCELERATOR_PRESETS[name]
    for design in (config, dataclasses.replace(config, memory_words=config.memory_words)):
        layout = kv_layout(design)      # records padded to the words of their reader's port
        assert design.kv_words == layout.words
        assert design.kv_base + layout.words == design.memory_words


def test_scale_format_is_one_definition():
    from tritium.hw.control import isa
    from tritium.hw.fixedpoint import scale_layout
    from tritium.sim.golden import fixed
    assert scale_layout.size == numerics.MANTISSA_BITS + numerics.EXPONENT_BITS
    assert (isa.SCALE_MANTISSA_BITS, isa.SCALE_EXPONENT_BITS) == (
        numerics.MANTISSA_BITS, numerics.EXPONENT_BITS)
    assert fixed.MANTISSA_BITS == numerics.MANTISSA_BITS and fixed.F_ACT == numerics.F_ACT
    assert MemoryConfig().data_width % 8 == 0
