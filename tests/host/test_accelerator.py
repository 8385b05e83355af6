"""The accelerator driver over the software device, against the golden model."""

import dataclasses
import struct
import zlib

import numpy as np
import pytest

from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.control.isa import (FLAG_ACCUMULATE, FLAG_GATE, FLAG_NEXT, MAX_STEPS, OPCODES,
                                    REGISTERS, STATUS, WRITABLE_REGISTERS)
from tritium.hw.link import protocol as p
from tritium.host.accelerator import Accelerator, DesignMismatchError, RunError
from tritium.host.compiler import encode_instruction, instruction_words
from tritium.host.device_model import DeviceModel
from tritium.host.errors import InputError
from tritium.host.importers import load_model
from tritium.host.link import FrameDecoder, encode_frame, parse_frame
from tritium.host.runtime import GoldenCheck, Session, generate
from tritium.host.device_model import DeviceModelTransport
from tritium.host.transports import open_transport
from tritium.sim.golden.model import GoldenModel, final_top

TINY = ACCELERATOR_PRESETS["tiny"]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


@pytest.fixture(scope="module")
def golden(model):
    return GoldenModel(model)


class CountingTransport(DeviceModelTransport):
    """A software-device transport that counts the frames sent to it."""

    def __init__(self, config):
        super().__init__(config)
        self.sent = 0

    def send(self, data):
        self.sent += 1
        super().send(data)


@pytest.fixture
def accelerator(model):
    accelerator = Accelerator(TINY, CountingTransport(TINY))
    accelerator.load(model)
    return accelerator


# The tiny design with the embedding on the host: its runs start from hidden states.
TINY_HOST_EMBEDDING = dataclasses.replace(TINY, name="tiny-host-embedding", embedding="host")


@pytest.fixture
def states_accelerator(model):
    accelerator = Accelerator(TINY_HOST_EMBEDDING, CountingTransport(TINY_HOST_EMBEDDING))
    accelerator.load(model)
    return accelerator


def prompt(length, seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, length))


@pytest.mark.parametrize("length", [1, 7, 20])       # 20 tokens are runs of 8, 8 and 4
def test_prefill_logits_equal_the_golden_model(accelerator, golden, length):
    ids = prompt(length, seed=length)
    logits = accelerator.prefill(ids)
    assert logits.shape == (length, TINY.model.vocab_size)
    assert np.array_equal(logits, golden.forward(ids, golden.new_cache()))
    assert accelerator.position == length
    assert accelerator.counters()["runs"] == -(-length // TINY.max_tokens)


def test_the_device_reads_ropes_table_from_its_memory(model, golden):
    """rope_table = "memory": the software device rotates by the table the host wrote
    into its memory, as the hardware does: the loaded table gives the golden logits, and
    a table with one position's words overwritten does not."""
    design = dataclasses.replace(TINY, name="tiny-rope-in-memory", rope_table="memory")
    transport = DeviceModelTransport(design)
    accelerator = Accelerator(design, transport)
    accelerator.load(model)
    ids = prompt(9, seed=3)
    assert np.array_equal(accelerator.prefill(ids), golden.forward(ids, golden.new_cache()))
    words = design.rope_rows * design.data_width // 8
    accelerator.link.write(design.rope_base + 5 * design.rope_rows, bytes(words))
    accelerator.reset()
    assert not np.array_equal(accelerator.prefill(ids), golden.forward(ids, golden.new_cache()))


def test_decode_and_a_second_prompt_continue_the_conversation(accelerator, golden):
    cache = golden.new_cache()
    ids = prompt(5, seed=1)
    logits = accelerator.prefill(ids)
    assert np.array_equal(logits, golden.forward(ids, cache))
    token = int(np.argmax(logits[-1]))
    for _ in range(32):
        logits = accelerator.decode(token)
        assert np.array_equal(logits, golden.forward([token], cache)[0])
        token = int(np.argmax(logits))
    second = prompt(11, seed=2)
    assert np.array_equal(accelerator.prefill(second), golden.forward(second, cache))
    assert accelerator.position == cache.length == 5 + 32 + 11


def test_reset_starts_a_new_conversation(accelerator, golden):
    accelerator.prefill(prompt(9, seed=3))
    accelerator.reset()
    assert accelerator.position == 0
    ids = prompt(3, seed=4)
    assert np.array_equal(accelerator.prefill(ids), golden.forward(ids, golden.new_cache()))


def test_generate_equals_the_golden_runtime(accelerator, golden):
    ids = prompt(6, seed=5)
    expected = list(generate(Session(golden), ids, 10))
    assert list(accelerator.generate(ids, 10)) == expected
    assert accelerator.position == 6 + 9                  # the last token is not fed back


# -- the LM head on the device ---------------------------------------------------------

# The tiny design with the LM head on the host: it returns hidden states only.
TINY_HOST_HEAD = dataclasses.replace(TINY, name="tiny-host-head", head="host")


def spy_reads(accelerator) -> list:
    """Record every READ of ``accelerator``'s link as ``(address, words)``."""
    reads, read = [], accelerator.link.read

    def recording(address, words):
        reads.append((address, words))
        return read(address, words)
    accelerator.link.read = recording
    return reads


def test_prefill_top_is_final_top_of_the_last_token(accelerator, golden):
    """A prompt of 13 tokens (runs of 8 and 5): the design's head_k best of its last
    token, indices and exact scores, as the golden model's."""
    ids = prompt(13, seed=6)
    indices, scores = accelerator.prefill_top(ids)
    hidden = golden.forward_hidden(ids, golden.new_cache())
    expected = final_top(golden.qmodel, hidden, TINY.head_k)
    assert np.array_equal(indices, expected[0]) and np.array_equal(scores, expected[1])
    assert indices.dtype == scores.dtype == np.int64
    assert accelerator.head_on_device and accelerator.position == 13


def test_prefill_top_of_one_reads_one_word_and_no_hidden_state(accelerator, golden):
    reads = spy_reads(accelerator)
    ids = prompt(13, seed=7)
    indices, scores = accelerator.prefill_top(ids, k=1)
    assert reads == [(accelerator.compiled.top_address, 1)]
    logits = golden.forward(ids, golden.new_cache(), "last")
    assert indices.tolist() == [int(np.argmax(logits))] and len(scores) == 1


def test_only_a_run_whose_top_k_is_read_takes_the_program_with_the_head(accelerator,
                                                                       monkeypatch):
    """A prompt's runs before its last, and every run whose hidden states the host reads
    (prefill's logits), skip the head's pass; the ``program`` register is set only when
    it changes, so a decode step after a decode step sends no SET."""
    device, compiled = accelerator.transport.device, accelerator.compiled
    heads, sets, head, set_register = [], [], device._head, accelerator.link.set
    monkeypatch.setattr(device, "_head", lambda f, position, tokens: (
        heads.append(tokens), head(f, position, tokens)))
    monkeypatch.setattr(accelerator.link, "set", lambda register, value: (
        sets.append(value), set_register(register, value)))
    accelerator.prefill_top(prompt(13, seed=9))                  # runs of 8 and 5
    assert heads == [5]
    assert sets == [compiled.no_head_program_address, compiled.program_address]
    accelerator.prefill_top([1], k=1)
    accelerator.prefill_top([2], k=1)
    assert heads == [5, 1, 1] and len(sets) == 2
    accelerator.prefill([3, 4])
    assert heads == [5, 1, 1] and sets[2:] == [compiled.no_head_program_address]


@pytest.mark.parametrize("k", [0, TINY.head_k + 1, True, 1.0])
def test_a_k_outside_the_design_is_refused_before_anything_is_sent(accelerator, k):
    sent = accelerator.transport.sent
    with pytest.raises(InputError, match=f"k must be an integer from 1 to the design's "
                                         f"head_k of {TINY.head_k}"):
        accelerator.prefill_top([1, 2], k=k)
    assert accelerator.transport.sent == sent and accelerator.position == 0


def test_a_host_head_design_has_no_top_k(model):
    accelerator = Accelerator(TINY_HOST_HEAD, CountingTransport(TINY_HOST_HEAD))
    accelerator.load(model)
    assert not accelerator.head_on_device
    sent = accelerator.transport.sent
    with pytest.raises(InputError, match="has its LM head on the host: use prefill"):
        accelerator.prefill_top([1, 2])
    assert accelerator.transport.sent == sent


def test_greedy_generation_from_the_device_head_equals_the_golden_runtime(model, golden):
    """A prompt longer than max_tokens and five decode steps: the same tokens as the
    golden runtime's logits. With a check, a run per token, every top-k checked bit for
    bit; without one the prompt's run reads one word, the argmax, and one run of five
    steps decodes the rest, its five choices read after it."""
    ids, count = prompt(13, seed=8), 6
    expected = list(generate(Session(golden), ids, count))
    golden_check = GoldenCheck(model)
    accelerator = Accelerator(TINY, CountingTransport(TINY))
    accelerator.load(model)
    reads = spy_reads(accelerator)
    assert list(accelerator.generate(ids, count, golden_check)) == expected
    assert reads == [(accelerator.compiled.top_address, TINY.head_k)] * count
    assert golden_check.runs == [True] * count
    accelerator = Accelerator(TINY, CountingTransport(TINY))
    accelerator.load(model)
    reads = spy_reads(accelerator)
    assert list(accelerator.generate(ids, count)) == expected
    io = accelerator.compiled.io_address
    assert reads == [(accelerator.compiled.top_address, 1), (io + 1, count - 1)]
    assert accelerator.run_steps == [1, 1, count - 1]        # the prompt in two runs
    assert accelerator.position == len(ids) + count - 1


def test_greedy_steps_stop_at_an_end_token_and_keep_the_conversation(model, golden):
    """An end-of-sequence token in the middle of a run's choices ends the generation
    there: the conversation holds what it would after a run per token (the prompt, the
    tokens before the end token), and the next prompt continues from it as the golden
    runtime's does."""
    ids = prompt(5, seed=3)
    tokens = list(generate(Session(golden), ids, 7))
    end = tokens[3]
    accelerator = Accelerator(TINY, CountingTransport(TINY))
    accelerator.load(model)
    assert list(accelerator.generate(ids, 7, eos_ids=[end])) == tokens[:tokens.index(end) + 1]
    assert accelerator.run_steps == [1, 6]                  # the run went on past it
    assert accelerator.position == len(ids) + tokens.index(end)
    session = Session(golden)
    list(generate(session, ids, 7, eos_ids=[end]))
    more = prompt(3, seed=4)
    assert list(accelerator.generate(more, 4)) == list(generate(session, more, 4))


def test_the_golden_check_of_greedy_steps_can_fail(model):
    """GoldenCheck.steps follows the steps' inputs on the golden model: the device's
    choices pass, the same with one changed do not."""
    ids = prompt(6, seed=9)
    runs = []
    for change in (False, True):
        accelerator = Accelerator(TINY, CountingTransport(TINY))
        accelerator.load(model)
        check = GoldenCheck(model)
        indices, scores = accelerator.prefill_top(ids)
        assert check.top(ids, indices, scores)
        choices = accelerator.decode_greedy(int(indices[0]), 4)
        if change:
            choices[2] = (choices[2] + 1) % TINY.model.vocab_size
        runs.append(check.steps(int(indices[0]), choices))
    assert runs == [True, False]


def test_decode_greedy_refuses_bad_steps_before_sending_anything(accelerator):
    sent = accelerator.transport.sent
    for steps in (0, MAX_STEPS + 1, True, 2.0, "3"):
        with pytest.raises(InputError, match=f"steps must be an integer from 1 to the "
                                             f"design's {MAX_STEPS}"):
            accelerator.decode_greedy(1, steps)
    accelerator.reset(TINY.model.max_context - 2)
    with pytest.raises(InputError, match="exceed the context of 256 tokens"):
        accelerator.decode_greedy(1, 3)
    with pytest.raises(InputError):
        accelerator.decode_greedy(TINY.model.vocab_size, 1)
    assert accelerator.transport.sent == sent


def test_a_design_that_does_not_choose_its_tokens_makes_one_step_a_run(model):
    accelerator = Accelerator(TINY_HOST_HEAD, CountingTransport(TINY_HOST_HEAD))
    accelerator.load(model)
    assert accelerator.max_steps == 1
    with pytest.raises(InputError, match="does not choose its own tokens"):
        accelerator.decode_greedy(1, 2)


@pytest.mark.parametrize("steps, tokens, position, status", [
    (0, 1, 0, "BAD_STEPS"), (MAX_STEPS + 1, 1, 0, "BAD_STEPS"), (2, 2, 0, "BAD_STEPS"),
    (3, 1, 254, "BAD_POSITION")])
def test_the_device_refuses_bad_steps(accelerator, steps, tokens, position, status):
    """The device's own checks of a RUN's steps (a host that bypasses decode_greedy):
    a refused run changes nothing."""
    accelerator.link.set(REGISTERS["steps"], steps)
    assert accelerator.link.run(position=position, tokens=tokens) == STATUS[status]


def test_counters_name_every_read_only_register(accelerator):
    counters = accelerator.counters()
    assert counters["design"] == TINY.design_id and counters["status"] == STATUS["OK"]
    assert counters["cycles"] == 0                         # the software model counts none
    assert set(counters) == set(REGISTERS) - set(WRITABLE_REGISTERS)


@pytest.mark.parametrize("call, match", [
    (lambda a: a.prefill([]), "empty token sequence"),
    (lambda a: a.prefill([1, 256]), "token id 256 is out of range"),
    (lambda a: a.decode(-1), "token id -1 is out of range"),
    (lambda a: a.prefill([1] * 257), "257 tokens exceed the context of 256 tokens"),
    (lambda a: a.generate([], 3), "the prompt is empty"),
    (lambda a: a.generate([1], 0), "at least 1"),
    (lambda a: a.generate([1] * 250, 8), "exceeds the context of 256 tokens \\(0 already"),
])
def test_bad_input_is_refused_before_anything_is_sent(accelerator, call, match):
    sent = accelerator.transport.sent
    with pytest.raises(InputError, match=match):
        call(accelerator)
    assert accelerator.transport.sent == sent and accelerator.position == 0


def test_context_overflow_counts_the_tokens_already_used(accelerator):
    accelerator.prefill(prompt(250))
    with pytest.raises(InputError, match="257 tokens exceed the context"):
        accelerator.prefill(prompt(7))
    assert accelerator.position == 250


def test_running_before_load_is_refused():
    transport = CountingTransport(TINY)
    with pytest.raises(InputError, match="no model is loaded.*call load"):
        Accelerator(TINY, transport).prefill([1])
    assert transport.sent == 0


def test_a_device_of_another_design_is_refused(model):
    other = dataclasses.replace(TINY, clock_hz=TINY.clock_hz // 2)
    accelerator = Accelerator(TINY, DeviceModelTransport(other))
    with pytest.raises(DesignMismatchError,
                       match=f"design id 0x{other.design_id:08x}.*design id "
                             f"0x{TINY.design_id:08x}"):
        accelerator.load(model)


@pytest.mark.parametrize("unknown", [max(OPCODES.values()) + 1, 5],
                         ids=["past the last", "the retired GATE"])
def test_a_failed_run_raises_with_its_status(accelerator, unknown):
    # Overwrite the first instruction of both programs (with and without the device
    # head) with an opcode the controller does not know.
    assert unknown not in OPCODES.values()
    for address in (accelerator.compiled.program_address,
                    accelerator.compiled.no_head_program_address):
        accelerator.link.write(address, bytes([unknown]))
    with pytest.raises(RunError, match="status 3 \\(BAD_OPCODE\\)"):
        accelerator.prefill([1, 2])
    assert accelerator.position == 0


def test_a_linear_that_both_accumulates_and_gates_fails_the_run(accelerator):
    """Both read a vector through the one reader: the device refuses the instruction
    (the hardware's sequencer does too: tests/hw/test_sequencer.py)."""
    compiled = accelerator.compiled
    index = next(n for n, i in enumerate(compiled.instructions) if i["flags"] & FLAG_GATE)
    fields = dict(compiled.instructions[index], flags=FLAG_ACCUMULATE | FLAG_GATE)
    step = instruction_words(accelerator.config.data_width // 8)
    for program in (compiled.program_address, compiled.no_head_program_address):
        accelerator.link.write(program + index * step, encode_instruction(**fields))
    with pytest.raises(RunError, match="status 3 \\(BAD_OPCODE\\)"):
        accelerator.prefill([1, 2])


@pytest.mark.parametrize("breakage", ["longer", "a norm after it", "its linear gone"])
def test_a_norm_of_the_next_linear_needs_that_linear_of_its_length(accelerator, breakage):
    """A NORM of the next LINEAR's output (``FLAG_NEXT``) of another length than that
    LINEAR writes, followed by another instruction, or by END, fails the run as the
    hardware's sequencer refuses it (tests/hw/test_sequencer.py)."""
    compiled = accelerator.compiled
    program = compiled.instructions
    index = next(n for n, i in enumerate(program) if i["flags"] & FLAG_NEXT)
    step = instruction_words(accelerator.config.data_width // 8)
    changes = {"longer": {index: dict(program[index], beats=program[index]["beats"] + 1)},
               "a norm after it": {index + 1: program[index]},
               "its linear gone": {index + 1: dict(opcode=OPCODES["END"])}}[breakage]
    for start in (compiled.program_address, compiled.no_head_program_address):
        for at, fields in changes.items():
            accelerator.link.write(start + at * step, encode_instruction(**fields))
    with pytest.raises(RunError, match="status 3 \\(BAD_OPCODE\\)"):
        accelerator.prefill([1, 2])


def replies(device, data):
    """Each reply frame of the device to ``data`` as (type, tag, payload)."""
    frames = FrameDecoder().feed(device.receive(data))
    assert all(not bad for _, bad in frames)
    return [parse_frame(raw) for raw, _ in frames]


def test_a_corrupted_frame_gets_the_crc_error():
    device = DeviceModel(TINY)
    frame = bytearray(encode_frame(p.SET, 9, struct.pack("<BI", REGISTERS["position"], 5)))
    frame[6] ^= 0x01                                  # the value's low byte (not END or ESC)
    assert replies(device, bytes(frame)) == [(p.ERROR, 9, bytes([p.ERR_CRC, p.SET]))]
    assert device.registers["position"] == 0          # nothing executed


def raw_frame(kind, tag, payload, length=None):
    """A frame with a chosen length field and a correct CRC, escaped by encode_frame's rules."""
    body = struct.pack("<BBH", kind, tag, len(payload) if length is None else length) + payload
    body += struct.pack("<I", zlib.crc32(body))
    return bytes([p.END]) + body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") \
        + bytes([p.END])


# Every frame below has tag 1.
@pytest.mark.parametrize("data, code, kind", [
    (bytes([p.END, 0x02, 0x01, p.ESC, 0x00, p.END]), p.ERR_ESCAPE, 0x02),
    (bytes([p.END, 0x05, 0x01, 0x01, p.END]), p.ERR_LENGTH, 0x05),
    (raw_frame(p.GET, 1, bytes([0]), length=2), p.ERR_LENGTH, p.GET),
    (raw_frame(p.WRITE, 1, bytes(4 + 1024)), p.ERR_LENGTH, p.WRITE),
    (raw_frame(0x07, 1, b""), p.ERR_COMMAND, 0x07),
    (raw_frame(p.INFO | p.REPLY, 1, b""), p.ERR_COMMAND, p.INFO | p.REPLY),
    (raw_frame(p.INFO, 1, b"x"), p.ERR_ARGUMENT, p.INFO),
    (raw_frame(p.WRITE, 1, bytes(4 + 31)), p.ERR_ARGUMENT, p.WRITE),
    (raw_frame(p.WRITE, 1, struct.pack("<I", TINY.memory_words - 1) + bytes(64)),
     p.ERR_ARGUMENT, p.WRITE),
    (raw_frame(p.READ, 1, struct.pack("<IH", 0, 0)), p.ERR_ARGUMENT, p.READ),
    (raw_frame(p.READ, 1, struct.pack("<IH", 0, 1024 // 32 + 1)), p.ERR_ARGUMENT, p.READ),
    (raw_frame(p.READ, 1, struct.pack("<IH", TINY.memory_words, 1)), p.ERR_ARGUMENT, p.READ),
    (raw_frame(p.SET, 1, struct.pack("<BI", REGISTERS["status"], 1)), p.ERR_ARGUMENT, p.SET),
    (raw_frame(p.SET, 1, struct.pack("<BI", 14, 1)), p.ERR_ARGUMENT, p.SET),
    (raw_frame(p.GET, 1, bytes([14])), p.ERR_ARGUMENT, p.GET),
    (raw_frame(p.RUN, 1, b""), p.ERR_ARGUMENT, p.RUN),
])
def test_bad_frames_get_the_gateware_error_codes(data, code, kind):
    assert replies(DeviceModel(TINY), data) == [(p.ERROR, 1, bytes([code, kind]))]


def test_empty_frames_get_no_reply_and_good_frames_work():
    device = DeviceModel(TINY)
    assert device.receive(bytes([p.END, p.END, p.END])) == b""
    words = bytes(range(192, 256))                      # two words with END and ESC bytes
    assert replies(device, encode_frame(p.WRITE, 3, struct.pack("<I", 100) + words)) == \
        [(p.WRITE | p.REPLY, 3, b"")]
    assert replies(device, encode_frame(p.READ, 4, struct.pack("<IH", 100, 2))) == \
        [(p.READ | p.REPLY, 4, words)]


def test_info_matches_the_gateware():
    """The payload the gateware's command unit sends (``protocol.info_bytes``)."""
    (kind, _, payload), = replies(DeviceModel(TINY), encode_frame(p.INFO, 1))
    assert kind == p.INFO | p.REPLY
    assert payload == p.info_bytes(TINY.max_payload, TINY.data_width // 8, TINY.design_id,
                                   TINY.addr_width)


@pytest.mark.parametrize("tokens, position, status", [
    (0, 0, "BAD_TOKENS"), (TINY.max_tokens + 1, 0, "BAD_TOKENS"),
    (2, TINY.model.max_context - 1, "BAD_POSITION"),
])
def test_runs_the_device_refuses(tokens, position, status):
    """With the registers set before, or by RUN itself; the reply is the status, the run
    counter and the (software device's zero) cycles."""
    device = DeviceModel(TINY)
    device.registers.update(tokens=tokens, position=position)
    reply = struct.pack(p.RUN_REPLY_FORMAT, STATUS[status], 1, 0)
    assert replies(device, encode_frame(p.RUN, 1, bytes([0]))) == [(p.RUN | p.REPLY, 1, reply)]
    assert device.registers["status"] == STATUS[status] and device.registers["runs"] == 1
    device = DeviceModel(TINY)
    setting = struct.pack(p.RUN_SET_FORMAT, 0, position, tokens)
    assert replies(device, encode_frame(p.RUN, 1, setting)) == [(p.RUN | p.REPLY, 1, reply)]
    assert (device.registers["position"], device.registers["tokens"]) == (position, tokens)


def test_open_transport_names_the_known_transports():
    assert isinstance(open_transport("model", TINY), DeviceModelTransport)
    with pytest.raises(InputError, match="unknown transport 'usb:3'; known transports: model"):
        open_transport("usb:3", TINY)
    with pytest.raises(InputError, match="'model' takes no argument"):
        open_transport("model:x", TINY)


def test_run_states_is_the_device_between_embedding_and_head(states_accelerator, model,
                                                             golden):
    """A run on hidden states returns what the golden layers make of them, and a
    conversation continued at a later position sees the cache below it."""
    from tritium.sim.golden.model import embed
    accelerator = states_accelerator
    cache = golden.new_cache()
    ids = prompt(5, seed=11)
    expected = golden.forward_hidden(ids, cache)
    assert np.array_equal(accelerator.run_states(embed(model, ids)), expected)
    assert accelerator.position == 5
    accelerator.reset(5)                       # continue after the first five
    following = golden.forward_hidden([7], cache)
    assert np.array_equal(accelerator.run_states(embed(model, [7])), following)


def test_run_states_is_refused_by_a_design_that_embeds_on_the_device(accelerator, model):
    with pytest.raises(InputError, match="looks up token embeddings itself: it runs token ids"):
        accelerator.run_states(np.zeros((1, 128), dtype=np.int64))


def test_both_embeddings_give_the_golden_logits(accelerator, states_accelerator, golden):
    """The same prompt and decode on a design with device embedding (token ids over the
    link) and one with host embedding (vectors): both logits equal golden's."""
    ids = prompt(11, seed=5)
    expected = golden.forward(ids, golden.new_cache())
    for device in (accelerator, states_accelerator):
        assert np.array_equal(device.prefill(ids), expected), device.config.name


@pytest.mark.parametrize("states, message", [
    (np.zeros((0, 128)), r"takes \(1 \.\. 8, 128\) hidden states, not an array of shape \(0, 128\)"),
    (np.zeros((9, 128)), r"not an array of shape \(9, 128\)"),
    (np.zeros((2, 64)), r"not an array of shape \(2, 64\)"),
])
def test_run_states_refuses_bad_shapes(states_accelerator, states, message):
    with pytest.raises(InputError, match=message):
        states_accelerator.run_states(states)


@pytest.mark.parametrize("position", [-1, 257, 3.0, True])
def test_reset_refuses_a_position_outside_the_context(accelerator, position):
    with pytest.raises(InputError, match="from 0 to the context of 256 tokens"):
        accelerator.reset(position)


def test_run_states_refuses_a_run_past_the_context(states_accelerator):
    states_accelerator.reset(250)
    with pytest.raises(InputError, match="258 tokens exceed the context of 256"):
        states_accelerator.run_states(np.zeros((8, 128), dtype=np.int64))


def test_the_simulator_build_reports_its_stages(tmp_path, monkeypatch):
    """A first build tells its ``progress`` callback what it is doing (here a stand-in
    build that writes the Verilog, then fails while "compiling")."""
    import subprocess
    import time
    import tritium.sim.backend.cosim as cosim
    from tritium.host.errors import TritiumError
    from tritium.host.sim_transport import SimTransport

    def build(component, *, toplevel, build_dir, **options):
        component()
        (build_dir / f"{toplevel}.v").write_text("module m; endmodule\n")
        time.sleep(1.0)
        raise subprocess.CalledProcessError(1, "verilator")

    monkeypatch.setattr(cosim, "build_simulation", build)
    stages = []
    with pytest.raises(TritiumError, match="building the simulator with Verilator failed"):
        SimTransport(TINY, build_dir=tmp_path, harness=object, variant="test",
                     progress=stages.append)
    assert stages == ["generating Verilog", "compiling with Verilator"]


def test_prefill_can_return_the_last_tokens_logits_only(accelerator, golden):
    """``logits="last"`` runs the head once for the whole prompt (what greedy generation
    asks for): the last row of every token's logits, bit for bit."""
    ids = prompt(11, seed=8)                   # two runs of the token tile
    expected = golden.forward(ids, golden.new_cache())
    last = accelerator.prefill(ids, logits="last")
    assert last.shape == (1, TINY.model.vocab_size)
    assert np.array_equal(last, expected[-1:])
    with pytest.raises(InputError, match="logits must be one of all, last, not 'first'"):
        accelerator.prefill([1], logits="first")
    assert accelerator.position == 11          # refused before anything ran
