"""The LM head on the device, below the driver: the packed head read back, and the
software device's HEAD and one-token STORE (the driver's top-k: test_accelerator.py)."""

import dataclasses

import numpy as np
import pytest

from tritium.hw.config import ACCELERATOR_PRESETS, HeadConfig
from tritium.hw.control.isa import FLAG_ONE_TOKEN, STATUS
from tritium.host.compiler import encode_instruction, instruction_words
from tritium.host.device_model import DeviceModel
from tritium.host.head_packer import pack_head, unpack_head
from tritium.sim.golden.head import quantize_head

TINY = ACCELERATOR_PRESETS["tiny"]                  # device embedding and device head
TINY_HOST_HEAD = dataclasses.replace(TINY, name="tiny-host-head", head="host")
TINY_HOST_EMBEDDING = dataclasses.replace(TINY, name="tiny-host-embedding", embedding="host")


# -- the packed head, read back --------------------------------------------------------

@pytest.mark.parametrize("head", [HeadConfig(), HeadConfig("int4", 4)], ids=["int8", "int4"])
@pytest.mark.parametrize("data_width", [64, 256])
def test_unpack_head_inverts_pack_head(data_width, head):
    """37 rows: a short last block at both widths; 44 codes: a padded last word of every
    row; int4 codes -7 .. 7 two a byte and 11 mantissas a row."""
    qhead = quantize_head(np.random.default_rng(3).standard_normal((37, 44)), head)
    codes, mantissas = unpack_head(pack_head(qhead, data_width), 37, 44, data_width, head)
    assert codes.dtype == np.int8 and mantissas.dtype == np.int64
    assert np.array_equal(codes, qhead.codes) and np.array_equal(mantissas, qhead.mantissas)


def test_unpack_head_refuses_bytes_of_another_length():
    data = pack_head(quantize_head(np.ones((5, 8))), 64)
    with pytest.raises(ValueError, match=f"is {len(data)} bytes, not {len(data) - 8}"):
        unpack_head(data[:-8], 5, 8, 64)


# -- the software device ----------------------------------------------------------------

def run_program(config, instructions, tokens=1, memory=()):
    """Run ``instructions`` (dicts of fields) on a fresh DeviceModel of ``config`` with
    ``memory`` ((word address, bytes) pairs) written first; the device and its status."""
    device = DeviceModel(config)
    word_bytes = device.word_bytes
    for address, data in memory:
        device.memory[address * word_bytes:address * word_bytes + len(data)] = data
    program = 1000                                  # words, clear of the data above
    step = instruction_words(word_bytes) * word_bytes
    for index, fields in enumerate(instructions + [dict(opcode="END")]):
        start = program * word_bytes + index * step
        device.memory[start:start + 32] = encode_instruction(**fields)
    device.registers.update(program=program, tokens=tokens, position=0)
    return device, device.run()


@pytest.mark.parametrize("config, opcode", [(TINY_HOST_HEAD, "HEAD"),
                                            (TINY_HOST_EMBEDDING, "EMBED")])
def test_an_opcode_the_design_lacks_is_a_bad_opcode(config, opcode):
    _, status = run_program(config, [dict(opcode=opcode, beats=1)])
    assert status == STATUS["BAD_OPCODE"]


def test_a_head_of_more_entries_than_the_design_keeps_is_a_bad_opcode():
    hidden = TINY.model.hidden
    _, status = run_program(TINY, [dict(opcode="NORM", beats=hidden // TINY.lanes),
                                   dict(opcode="HEAD", beats=TINY.head_k + 1)])
    assert status == STATUS["BAD_OPCODE"]


def test_a_one_token_store_moves_token_0s_vector_only():
    """Three tokens' vectors are loaded; the flagged STORE writes the first one's beats,
    and nothing of the other two."""
    word_bytes, beats = TINY.data_width // 8, 2
    values = np.arange(3 * beats * TINY.lanes, dtype="<i4") + 1
    device, status = run_program(TINY, [
        dict(opcode="LOAD", address=0, dst=0, dst_stride=beats, beats=beats),
        dict(opcode="STORE", flags=FLAG_ONE_TOKEN, address=100, src=0, src_stride=beats,
             beats=beats)], tokens=3, memory=[(0, values.tobytes())])
    assert status == STATUS["OK"]
    stored = np.frombuffer(device.memory[100 * word_bytes:106 * word_bytes], dtype="<i4")
    assert np.array_equal(stored[:beats * TINY.lanes], values[:beats * TINY.lanes])
    assert not stored[beats * TINY.lanes:].any()
