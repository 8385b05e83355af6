"""The compiler: instruction encoding, the tiny model's program and memory image."""

import dataclasses
import re
import struct

import numpy as np
import pytest

from tritium.hw.attention.kvcache import kv_layout
from tritium.hw.config import ACCELERATOR_PRESETS, MODEL_PRESETS, rope_row_pairs
from tritium.hw.elementwise.rope import rope_table
from tritium.hw.layouts import rope_row_layout
from tritium.hw.control.isa import (FIELDS, FLAG_ACCUMULATE, FLAG_AT_STEP, FLAG_GATE,
                                    FLAG_NEXT, FLAG_ONE_TOKEN, INSTRUCTION_BYTES, MAX_STEPS,
                                    OPCODES)
from tritium.host.compiler import (check_model, compile_model, decode_instruction,
                                   encode_instruction,
                                   instruction_words, pack_scale, program_length,
                                   scratch_layout, unpack_scale)
from tritium.host.errors import InputError
from tritium.host.importers import load_model
from tritium.host.model import Model
from tritium.host.packer import PackedTensor, unpack_ternary
from tritium.sim.golden.model import embed

TINY = ACCELERATOR_PRESETS["tiny"]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


@pytest.fixture(scope="module")
def compiled(model):
    return compile_model(model, TINY)


def test_instruction_fields_sit_at_their_documented_offsets():
    values = {"opcode": 4, "flags": 1, "layer": 3, "address": 0x11223344, "src": 0x0102,
              "dst": 0x0304, "src_stride": 0x0506, "dst_stride": 0x0708, "beats": 0x090A,
              "blocks": 0x0B0C, "scale": 0xDEADBEEF, "eps": 0x01020304}
    code = encode_instruction(**values)
    assert len(code) == INSTRUCTION_BYTES
    for name, offset, fmt in FIELDS:
        assert struct.unpack_from("<" + fmt, code, offset)[0] == values[name], name
    assert code[3] == 0 and code[28:] == bytes(4)                 # unused bytes are zero
    assert decode_instruction(code) == values
    assert encode_instruction(**decode_instruction(code)) == code


def test_instruction_encoding_refuses_unknown_and_oversized_fields():
    assert decode_instruction(encode_instruction(opcode="END")) == {n: 0 for n, _, _ in FIELDS}
    with pytest.raises(ValueError, match="unknown instruction field"):
        encode_instruction(target=1)
    with pytest.raises(ValueError, match="src = 65536 does not fit 16"):
        encode_instruction(src=65536)


def test_scales_round_trip_through_the_instruction_format():
    for scale in [(0, 0), (32768, -55), (65535, 511), (40000, -512)]:
        assert tuple(map(int, unpack_scale(pack_scale(scale)))) == scale
    assert pack_scale((40000, -1)) == 40000 | 0x3FF << 16
    with pytest.raises(InputError, match="does not fit"):
        pack_scale((40000, 512))


def test_instructions_take_whole_words():
    assert [instruction_words(b) for b in (4, 16, 32, 64)] == [8, 2, 1, 1]


def test_the_tiny_program_is_load_embed_layers_store_head_end(compiled):
    o = OPCODES
    layers = TINY.model.layers
    # A layer after its attn_norm: QKV, ATTEND, attn_sub_norm, ffn_norm (of wo's output,
    # before it), wo, w_gate, ffn_sub_norm (of w_up's), w_up, the next layer's attn_norm
    # (of w_down's output) but in the last layer, w_down.
    layer = [o["LINEAR"], o["LINEAR"], o["LINEAR"], o["ATTEND"], o["NORM"], o["NORM"],
             o["LINEAR"], o["LINEAR"], o["NORM"], o["LINEAR"]]
    body = [op for index in range(layers)
            for op in layer + [o["NORM"]] * (index < layers - 1) + [o["LINEAR"]]]
    opcodes = [i["opcode"] for i in compiled.instructions]
    # Device embedding: the token ids come in by LOAD, EMBED looks up their rows; the
    # device head: the output norm, HEAD and the top-k's STORE after the hidden states',
    # and (both on the device: several steps) the choice's STORE for the next step.
    assert opcodes == [o["LOAD"], o["EMBED"], o["NORM"]] + body + \
        [o["STORE"], o["NORM"], o["HEAD"], o["STORE"], o["STORE"], o["END"]]
    assert len(opcodes) == program_length(TINY) == 2 + 12 * layers + 2 + 4
    load, embed = compiled.instructions[:2]
    qkv, x = compiled.scratch["qkv"], compiled.scratch["x"]
    table, words = compiled.placement["embedding"]
    assert words == TINY.model.vocab_size * x.beats // 2          # a 16-bit table
    assert (load["address"], load["beats"], load["dst"], load["dst_stride"], load["flags"]) == \
        (compiled.io_address, 1, qkv.base, qkv.stride, FLAG_AT_STEP)
    choice = compiled.instructions[-2]
    assert (choice["address"], choice["beats"], choice["src"], choice["flags"]) == \
        (compiled.io_address, 1, qkv.base, FLAG_ONE_TOKEN | FLAG_AT_STEP)
    assert (embed["address"], embed["beats"], embed["src"], embed["src_stride"], embed["dst"],
            embed["dst_stride"]) == (table, x.beats, qkv.base, qkv.stride, x.base, x.stride)
    attends = [i for i in compiled.instructions if i["opcode"] == o["ATTEND"]]
    assert [i["layer"] for i in attends] == list(range(layers))
    accumulating = [i for i in compiled.instructions if i["flags"] & FLAG_ACCUMULATE]
    assert len(accumulating) == 2 * layers                         # wo and w_down into x
    assert all(i["dst"] == compiled.scratch["x"].base for i in accumulating)


def test_a_norm_of_a_linears_output_comes_just_before_that_linear(compiled):
    """ffn_norm, ffn_sub_norm and every attn_norm but the first norm the output of the
    LINEAR after them (``FLAG_NEXT``): wo's, w_up's and the last layer's w_down's, each
    of as many beats as that LINEAR writes, its destination the NORM's source."""
    program, x, gate = compiled.instructions, compiled.scratch["x"], compiled.scratch["gate"]
    fused = [n for n, i in enumerate(program)
             if i["opcode"] == OPCODES["NORM"] and i["flags"] & FLAG_NEXT]
    assert len(fused) == 3 * TINY.model.layers - 1
    for n in fused:
        norm, linear = program[n], program[n + 1]
        assert linear["opcode"] == OPCODES["LINEAR"]
        assert linear["dst"] == norm["src"] and linear["dst_stride"] == norm["src_stride"]
        assert linear["blocks"] * TINY.tlmm.rows // TINY.lanes == norm["beats"]
        assert norm["src"] in (x.base, gate.base)
    plain = [i for i in program if i["opcode"] == OPCODES["NORM"] and not i["flags"]]
    assert len(plain) == TINY.model.layers + 2      # attn_sub_norms, the first, the output


def test_the_up_projection_gates_in_place_of_the_gate_vector(compiled):
    """Each layer's LINEAR of ``w_up`` gates (``FLAG_GATE``): it reads the gate vector
    the LINEAR of ``w_gate`` wrote and writes ``act(gate) * up`` over it, which the NORM
    before it norms; no instruction reads or writes an ``up`` vector."""
    program, gate = compiled.instructions, compiled.scratch["gate"]
    assert "up" not in compiled.scratch
    gating = [n for n, i in enumerate(program) if i["flags"] & FLAG_GATE]
    assert len(gating) == TINY.model.layers
    for n in gating:
        before, norm, up = program[n - 2:n + 1]
        assert before["opcode"] == up["opcode"] == OPCODES["LINEAR"]
        assert not up["flags"] & FLAG_ACCUMULATE
        assert (before["dst"], up["src"], up["dst"], norm["src"]) == (gate.base,) * 4
        assert (up["src_stride"], up["dst_stride"]) == (gate.stride, gate.stride)
        assert up["blocks"] * TINY.tlmm.rows == TINY.model.ffn


def test_the_device_head_tail_scores_the_last_norm_and_stores_the_top_k(compiled):
    """NORM of ``x`` with the output norm's gains, HEAD of the packed head into ``qkv``,
    one vector of ``head_k`` beats stored at ``top_address`` (after the hidden states),
    then the choice (its first entry) for the next step (the test above)."""
    norm, head, store = compiled.instructions[-5:-2]
    x, qkv = compiled.scratch["x"], compiled.scratch["qkv"]
    states = TINY.max_tokens * TINY.model.hidden // TINY.lanes
    assert (norm["address"], norm["src"], norm["beats"]) == \
        (compiled.placement["output_norm"][0], x.base, x.beats)
    assert (head["opcode"], head["address"], head["dst"], head["beats"]) == \
        (OPCODES["HEAD"], compiled.placement["head"][0], qkv.base, TINY.head_k)
    assert (store["flags"], store["address"], store["src"], store["beats"]) == \
        (FLAG_ONE_TOKEN, compiled.top_address, qkv.base, TINY.head_k)
    assert compiled.top_address == compiled.states_address + states


def test_a_host_head_design_has_no_head_in_memory_or_program(model):
    config = dataclasses.replace(TINY, name="tiny-host-head", head="host")
    compiled = compile_model(model, config)
    assert "head" not in compiled.placement and "output_norm" not in compiled.placement
    assert compiled.top_address is None
    assert OPCODES["HEAD"] not in [i["opcode"] for i in compiled.instructions]
    assert len(compiled.instructions) == program_length(config) == 2 + 12 * 4 + 2


def test_the_program_in_the_image_decodes_to_the_instructions(compiled):
    word_bytes = TINY.data_width // 8
    data = dict(compiled.image)[compiled.program_address]
    step = instruction_words(word_bytes) * word_bytes
    assert [decode_instruction(data[i:i + step]) for i in range(0, len(data), step)] == \
        compiled.instructions


def test_the_image_lies_below_the_kv_cache_without_overlaps(compiled):
    word_bytes = TINY.data_width // 8
    regions = sorted(compiled.placement.values())
    assert regions[0][0] == 0
    for (start, words), (following, _) in zip(regions, regions[1:]):
        assert start + words <= following
    assert regions[-1][0] + regions[-1][1] == compiled.words <= TINY.kv_base
    placed = {address: words for address, words in compiled.placement.values()}
    for address, data in compiled.image:
        assert len(data) == placed[address] * word_bytes
    # The inputs (a word per token id, and per step: each step's input and the last
    # step's choice), the hidden states, the top-k.
    states = TINY.max_tokens * TINY.model.hidden // TINY.lanes
    inputs = max(TINY.max_tokens, MAX_STEPS) + 1
    assert compiled.placement["io"] == (compiled.io_address, inputs + states + TINY.head_k)
    assert compiled.states_address == compiled.io_address + inputs


def test_weights_and_gains_in_the_image_read_back(compiled):
    data = dict(compiled.image)
    layer = compiled.qmodel.layers[2]
    address, _ = compiled.placement["layer2.w_down"]
    shape = TINY.model.linear_shapes()["w_down"]
    size = -(-PackedTensor(b"", shape, TINY.tlmm.tile).bits // 8)
    packed = PackedTensor(data[address][:size], shape, TINY.tlmm.tile)
    assert np.array_equal(unpack_ternary(packed), layer.linears["w_down"].weights)
    address, _ = compiled.placement["layer2.ffn_sub_norm"]
    gains = np.frombuffer(data[address], dtype="<i2")
    assert np.array_equal(gains[:TINY.model.ffn], layer.ffn_sub_norm.values)
    assert not gains[TINY.model.ffn:].any()


def test_scratch_regions_fill_the_scratchpad_without_overlaps():
    regions = scratch_layout(TINY)
    end = 0
    for region in regions.values():
        assert region.base == end and region.stride == region.beats
        end = region.at(TINY.max_tokens)
    assert end == TINY.scratch_words


@pytest.mark.parametrize("field, value", [("hidden", 64), ("activation", "relu2"),
                                          ("layers", 2)])
def test_a_model_of_another_shape_is_refused(field, value):
    shape = dataclasses.replace(MODEL_PRESETS["tiny"], name="other", **{field: value})
    with pytest.raises(InputError, match=f"has {field} = {value!r}.*built for {field}"):
        compile_model(Model.random(shape, seed=1), TINY)


def test_a_model_with_another_rope_theta_is_refused():
    shape = dataclasses.replace(MODEL_PRESETS["tiny"], rope_theta=500000.0)
    with pytest.raises(InputError, match="rope_theta = 500000.0"):
        compile_model(Model.random(shape, seed=1), TINY)


def test_an_image_too_big_for_the_memory_is_refused():
    small = dataclasses.replace(TINY, memory_words=TINY.kv_words + 1000)
    with pytest.raises(InputError, match=r"needs \d+ words of memory .* has 1000 below"):
        compile_model(load_model("tiny"), small)


def test_the_rope_table_in_memory_sits_below_the_kv_cache(model):
    """rope_table = "memory": the image holds RoPE's golden table just below the KV cache,
    a row of rope_row_layout per bus word (pairs r*n .. r*n + n-1 of a position in its
    word r), the rest of each word zero; a memory too small for it is refused."""
    design = dataclasses.replace(TINY, rope_table="memory")
    compiled = compile_model(model, design)
    rows = design.rope_rows
    assert design.rope_words == design.model.max_context * rows
    assert compiled.placement["rope"] == (design.rope_base, design.rope_words)
    assert design.rope_base + design.rope_words == design.kv_base
    assert compiled.words <= design.rope_base
    image = dict(compiled.image)[design.rope_base]
    word_bytes = design.data_width // 8
    assert len(image) == design.rope_words * word_bytes
    cos, sin = rope_table(design.model)
    pairs = rope_row_pairs(design.model, design.lanes)
    layout = rope_row_layout(pairs)
    for position in (0, 1, 97, design.model.max_context - 1):
        for row in range(rows):
            entries = [{"cos": cos[position][row * pairs + e], "sin": sin[position][row * pairs + e]}
                       for e in range(pairs)]
            address = (position * rows + row) * word_bytes
            word = int.from_bytes(image[address:address + word_bytes], "little")
            assert word == layout.const(entries).as_bits()
    with pytest.raises(InputError, match=r"has 1000 below its KV cache and RoPE table"):
        compile_model(model, dataclasses.replace(
            design, memory_words=design.kv_words + design.rope_words + 1000))
    with pytest.raises(ValueError, match=r"the KV cache \(\d+ words\) and the RoPE table"):
        dataclasses.replace(design, memory_words=design.kv_words + design.rope_words)
    with pytest.raises(ValueError, match="rope_table must be one of"):
        dataclasses.replace(design, rope_table="flash")


def test_a_host_embedding_program_loads_the_vectors(model):
    """With the embedding on the host there is no table, and the program starts with one
    LOAD of the run's vectors into ``x``."""
    config = dataclasses.replace(TINY, name="tiny-host-embedding", embedding="host")
    compiled = compile_model(model, config)
    assert "embedding" not in compiled.placement
    first = compiled.instructions[0]
    assert first["opcode"] == OPCODES["LOAD"]
    assert compiled.instructions[1]["opcode"] == OPCODES["NORM"]
    assert (first["beats"], first["dst"]) == (compiled.scratch["x"].beats,
                                              compiled.scratch["x"].base)
    assert len(compiled.instructions) == program_length(config) == 1 + 12 * 4 + 2 + 3


@pytest.mark.parametrize("bits", [16, 32])
def test_the_embedding_table_holds_the_hosts_embedding(model, bits):
    """Row ``i`` of the table is ``embed(model, [i])``, as int16 or int32: a device lookup
    is bit-exact; the 16-bit table takes half the words."""
    # (A 32-bit table and the head do not both fit in the tiny preset's memory.)
    config = dataclasses.replace(TINY, name=f"tiny-{bits}", embedding_bits=bits, head="host")
    compiled = compile_model(model, config)
    table, words = compiled.placement["embedding"]
    assert words == TINY.model.vocab_size * TINY.model.hidden * bits // TINY.data_width
    data = dict(compiled.image)[table]
    rows = np.frombuffer(data, dtype=f"<i{bits // 8}").reshape(TINY.model.vocab_size, -1)
    assert np.array_equal(rows, embed(model, np.arange(TINY.model.vocab_size)))


def test_a_16_bit_table_refuses_an_embedding_beyond_its_range(model):
    """Values outside [-8, 8) do not fit Q3.12: refused before anything runs, naming the
    fix; a 32-bit table takes them."""
    large = dataclasses.replace(model, embedding=model.embedding * 40)
    with pytest.raises(InputError, match="embedding values up to 19.7.*beyond a 16-bit "
                                         "table's \\[-8, 8\\).*embedding_bits = 32"):
        check_model(large, TINY)
    wide = dataclasses.replace(TINY, name="tiny-32", embedding_bits=32, head="host")  # fits
    check_model(large, wide)
    compile_model(large, wide)


@pytest.mark.parametrize("fields, message", [
    ({"embedding": "fpga"}, "AcceleratorConfig.embedding must be one of ('device', 'host'), "
                            "not 'fpga'"),
    ({"embedding_bits": 8}, "AcceleratorConfig.embedding_bits must be one of (16, 32), not 8"),
])
def test_the_embedding_fields_are_checked(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(TINY, **fields)


def test_a_16_bit_table_needs_two_beats_per_word():
    odd = dataclasses.replace(TINY.model, hidden=136)       # 17 beats of 8 lanes
    with pytest.raises(ValueError, match="hidden = 136 must be a multiple of 16"):
        dataclasses.replace(TINY, model=odd, tlmm=dataclasses.replace(TINY.tlmm, max_k=408,
                                                                      max_n=408))


# A one-layer model whose norms take an odd number of 256-bit words (hidden 144: 9 words
# of gains), so its matrices start at odd words unless aligned.
ODD_MODEL = dataclasses.replace(MODEL_PRESETS["tiny"], name="odd", hidden=144, heads=9,
                                head_dim=16, kv_heads=3, layers=1)


def test_a_weight_port_of_two_words_gets_its_matrices_aligned():
    """With a TLMM weight port two bus words wide, every matrix starts at an even word and
    fills whole pairs, zero-padded (the datapath halves LINEAR's address); the weights'
    bytes are the same as on a design without one."""
    narrow = dataclasses.replace(TINY, model=ODD_MODEL)
    wide = dataclasses.replace(narrow, memory_ports=2, weight_port_words=2)
    assert wide.weight_memory.data_width == 2 * TINY.data_width
    assert wide.weight_memory.addr_width == TINY.memory.addr_width - 1
    model = Model.random(ODD_MODEL, seed=1)
    before, after = compile_model(model, narrow), compile_model(model, wide)
    matrices = [name for name in before.placement if re.search(r"\.w\w+$", name)]
    assert len(matrices) == 7
    assert any(before.placement[name][0] % 2 for name in matrices)
    word_bytes = TINY.data_width // 8
    before_image, after_image = dict(before.image), dict(after.image)
    for name in matrices:
        address, words = after.placement[name]
        assert address % 2 == 0 and words % 2 == 0
        was_address, was_words = before.placement[name]
        assert words - was_words in (0, 1)
        assert after_image[address] == (before_image[was_address]
                                        + bytes((words - was_words) * word_bytes))
    linears = [i for i in after.instructions if i["opcode"] == OPCODES["LINEAR"]]
    assert [i["address"] for i in linears] == [after.placement[name][0] for name in matrices]


def test_a_weight_port_must_be_a_power_of_two_within_the_ports():
    for ports, words in ((2, 3), (2, 4), (1, 2), (4, 0)):
        with pytest.raises(ValueError, match="weight_port_words"):
            dataclasses.replace(TINY, memory_ports=ports, weight_port_words=words)
    with pytest.raises(ValueError, match="cannot be widened 4096 times"):
        TINY.memory.widened(4096)
    with pytest.raises(ValueError, match="power of two, not 3"):
        TINY.memory.widened(3)


def test_kv_reads_through_the_weight_port_starts_each_pass_on_its_words(model):
    """kv_reads = "weights": each KV record (564 bits for tiny) keeps its 3 bus words and
    straddles the weight port's 512-bit words (2 bus words); each (layer, kv head)'s
    records start on one of them (256 records of 3 words: 768, already even), and so
    does the cache's base; the rest of the image does not move. Refused without a weight
    port, or with a memory whose top is not a weight-port word."""
    ported = dataclasses.replace(TINY, memory_ports=2, weight_port_words=2, memory_words=2 ** 15)
    design = dataclasses.replace(ported, kv_reads="weights")
    assert (ported.kv_port_words, design.kv_port_words) == (1, 2)
    a = design.attention
    assert design.kv_words == a.layers * a.kv_heads * a.capacity * 3 == ported.kv_words
    layout = kv_layout(design)
    assert (layout.base, layout.words_per_record, layout.region_words) == (design.kv_base, 3, 768)
    assert layout.base % 2 == 0 and layout.record_offsets() == (0, 1)
    assert layout.port_words(5) == 8 and layout.port_memory == design.memory.widened(2)
    odd = dataclasses.replace(design, model=dataclasses.replace(TINY.model, max_context=255))
    assert odd.kv_words == a.layers * a.kv_heads * 766          # 765 words, rounded up
    assert compile_model(model, design).image == compile_model(model, ported).image
    with pytest.raises(ValueError, match="kv_reads must be one of"):
        dataclasses.replace(ported, kv_reads="both")
    with pytest.raises(ValueError, match=r"kv_reads = 'weights' .* needs one \(weight_port_words"):
        dataclasses.replace(TINY, kv_reads="weights")
    with pytest.raises(ValueError, match=r"memory_words \(32767\) must be a multiple of "
                                         r"weight_port_words \(2\)"):
        dataclasses.replace(design, memory_words=2 ** 15 - 1)
