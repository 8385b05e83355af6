"""The weight queue on the host side: the config's checks, the compiler's PREFETCH
placement, the software device's pairing of PREFETCH and LINEAR, and the performance
model's use of the words read ahead (docs/accelerator.md, "Weight queue")."""

import dataclasses

import pytest

from tritium.hw.config import ACCELERATOR_PRESETS, WEIGHT_QUEUE_MIN
from tritium.hw.control.isa import OPCODES, STATUS, design_opcodes
from tritium.hw.weights import WeightPrefetcher
from tritium.host.compiler import (compile_model, encode_instruction, instruction_words,
                                   program_fields, program_length, run_inputs)
from tritium.host.device_model import DeviceModel
from tritium.host.model import Model
from tritium.host.performance import estimate_run

TINY = ACCELERATOR_PRESETS["tiny"]
PORTED = dataclasses.replace(TINY, memory_ports=2, weight_port_words=2)
QUEUED = dataclasses.replace(PORTED, name="tiny-queued", weight_queue=WEIGHT_QUEUE_MIN)


def test_a_weight_queue_is_a_power_of_two_behind_a_weight_port():
    for depth in (1, 64, 200, -128, True):
        with pytest.raises(ValueError, match="weight_queue must be 0 or a power of two of "
                                             "at least 128 words"):
            dataclasses.replace(PORTED, weight_queue=depth)
    with pytest.raises(ValueError, match=r"weight_queue .* needs one \(weight_port_words > 1\)"):
        dataclasses.replace(TINY, weight_queue=128)
    assert "PREFETCH" in design_opcodes(QUEUED) and "PREFETCH" not in design_opcodes(PORTED)
    assert ACCELERATOR_PRESETS["kv260"].weight_queue == 4096
    assert ACCELERATOR_PRESETS["kv260-2b"].weight_queue == 0


def test_every_linear_is_prefetched_in_order_one_matrix_ahead():
    """A PREFETCH copies its LINEAR's fields (so it names the same matrix) in LINEAR
    order; the first two come before the first LINEAR, each later one just before the
    LINEAR two before its own; so when a PREFETCH issues, at most the matrix of the
    LINEAR after it is still waiting, which the prefetcher's job queue holds."""
    plain, program = program_fields(PORTED), program_fields(QUEUED)
    assert [f for f in program if f["op"] != "PREFETCH"] == plain
    assert len(program) == program_length(QUEUED) == program_length(PORTED) + 7 * 4
    linears = [f for f in program if f["op"] == "LINEAR"]
    prefetches = [f for f in program if f["op"] == "PREFETCH"]
    assert prefetches == [dict(f, op="PREFETCH") for f in linears]
    ahead = 0                   # PREFETCHed matrices whose LINEAR has not executed
    for fields in program:
        if fields["op"] == "PREFETCH":
            assert ahead < WeightPrefetcher.JOBS
            ahead += 1
        elif fields["op"] == "LINEAR":
            ahead -= 1
            assert ahead >= 0
    assert ahead == 0
    assert program[0]["op"] == "PREFETCH" and program[-1]["op"] == "END"


def run_device(config, model, program):
    """``model`` compiled for ``config`` with its program replaced by ``program`` (fields);
    the device's status after one run of one token."""
    compiled = compile_model(model, config)
    device = DeviceModel(config)
    word_bytes = device.word_bytes
    for address, data in compiled.image:
        device.memory[address * word_bytes:address * word_bytes + len(data)] = data
    step = instruction_words(word_bytes) * word_bytes
    start = compiled.program_address * word_bytes
    for index, fields in enumerate(program):
        fields = {("opcode" if name == "op" else name): (OPCODES[value] if name == "op" else value)
                  for name, value in fields.items()}
        device.memory[start + index * step:start + index * step + 32] = \
            encode_instruction(**fields)
    device.registers.update(program=compiled.program_address, tokens=1, position=0)
    return device.run()


@pytest.fixture(scope="module")
def model():
    return Model.random(TINY.model, seed=3)


def test_the_device_runs_the_queued_program_and_refuses_broken_pairs(model):
    """The compiled program runs; dropping a PREFETCH (a LINEAR with none, or of another
    matrix), dropping a LINEAR (a PREFETCH left over at END) or swapping two PREFETCHes
    is a fault, as on the hardware it would hang, compute with the wrong words or leave
    words for the next run."""
    program = program_fields(QUEUED)
    assert run_device(QUEUED, model, program) == STATUS["OK"]
    first = program.index(next(f for f in program if f["op"] == "LINEAR"))
    second = program.index(next(f for f in program[first + 1:] if f["op"] == "PREFETCH"))
    last = max(index for index, f in enumerate(program) if f["op"] == "LINEAR")
    broken = {
        "no prefetch": program[1:],
        "a linear dropped": program[:first] + program[first + 1:],
        "the last linear dropped": program[:last] + program[last + 1:],
        "swapped": (program[:1] + [program[second]] + program[1:second]
                    + [program[0]] + program[second + 1:]),
    }
    for name, fields in broken.items():
        assert run_device(QUEUED, model, fields) == STATUS["BAD_OPCODE"], name


def test_the_device_computes_the_same_with_and_without_the_queue(model):
    """The same run on the software device gives the same hidden states with the
    PREFETCHes as without (each LINEAR takes the matrix its PREFETCH named)."""
    ids = [5, 17, 3]
    states = []
    for config in (PORTED, QUEUED):
        compiled = compile_model(model, config)
        device = DeviceModel(config)
        word_bytes = device.word_bytes
        for address, data in compiled.image:
            device.memory[address * word_bytes:address * word_bytes + len(data)] = data
        inputs = run_inputs(model, config, ids)
        start = compiled.io_address * word_bytes
        device.memory[start:start + len(inputs)] = inputs
        device.registers.update(program=compiled.no_head_program_address, tokens=len(ids),
                                position=0)
        assert device.run() == STATUS["OK"]
        size = len(ids) * TINY.model.hidden * 4
        start = compiled.states_address * word_bytes
        states.append(bytes(device.memory[start:start + size]))
    assert states[0] == states[1] and any(states[0])


def test_the_model_reads_ahead_and_a_deeper_queue_never_costs():
    """On the kv260 preset, decode at context 64: the queue takes time off the linears
    (the weights stream during NORM, ATTEND and GATE), never off the bytes."""
    kv260 = ACCELERATOR_PRESETS["kv260"]
    without = dataclasses.replace(kv260, weight_queue=0)
    runs = {depth: estimate_run(dataclasses.replace(kv260, weight_queue=depth), "kv260", 63, 1)
            for depth in (128, 1024, 4096)}
    base = estimate_run(without, "kv260", 63, 1)
    assert runs[4096].by_kind["linear"] < base.by_kind["linear"]
    assert runs[4096].cycles <= runs[1024].cycles <= runs[128].cycles < base.cycles
    for run in runs.values():
        assert run.words == base.words | {"fetch": run.words["fetch"]}
