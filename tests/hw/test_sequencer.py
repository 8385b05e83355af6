# amaranth: UnusedElaboratable=no
"""The controller's sequencer (amaranth.sim) against a stub datapath.

The stub takes the offered commands with random back-pressure, moves a few words over
the datapath's memory port for the instructions that have a memory client, and says
``done`` a random while after. The sequencer must fetch every instruction, offer each
of its commands exactly once, look at ``done`` two cycles after the last command is
taken, and count the cycles and words per kind as it documents; a bad opcode, bad
tokens or a bad position end the run with their status.
"""

import dataclasses
import random
import re
import zlib

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritium.host.compiler import encode_instruction, instruction_words
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.control.interface import (CLIENT_OF_OPCODE, COMMANDS, COMMANDS_OF,
                                          CONTROLLER_COUNTERS, COUNTER_OF_OPCODE, ExecuteSignature)
from tritium.hw.control.isa import (FLAG_ACCUMULATE, FLAG_GATE, FLAG_NEXT, OPCODES, STATUS,
                                    design_steps)
from tritium.hw.control.sequencer import Sequencer
from tritium.hw.memory import OnChipMemory
from tritium.hw.layouts import run_result_layout
from tritium.hw.memory.port import MemoryPortSignature
from tritium.sim.testing.amaranth_tb import (TRAFFIC, run_simulation, stream_receive, stream_send,
                                      watchdog)

NAMES = {code: name for name, code in OPCODES.items()}
PROGRAM = [dict(opcode="LOAD"), dict(opcode="NORM"), dict(opcode="LINEAR"),
           dict(opcode="LINEAR", flags=FLAG_ACCUMULATE), dict(opcode="STORE"),
           dict(opcode="NORM", flags=FLAG_NEXT, beats=6),
           dict(opcode="LINEAR", flags=FLAG_GATE, blocks=6), dict(opcode="STORE"),
           dict(opcode="ATTEND"), dict(opcode="NORM"), dict(opcode="END")]
# 5 was GATE: retired, it is refused like any value no opcode has (0x55 below).
BAD_PROGRAM = [dict(opcode="LOAD"), dict(opcode=5), dict(opcode="LOAD")]
# Programs the sequencer refuses at their second instruction (the first runs): a LINEAR
# cannot both accumulate and gate (it reads one vector through the reader); a NORM of the
# next LINEAR's output must be followed by that LINEAR (PREFETCHes aside), of as many
# vector beats, before anything else and before the END.
REFUSED = {
    "a byte no opcode has": [dict(opcode="LOAD"), dict(opcode=0x55)],
    "accumulates and gates": [
        dict(opcode="LOAD"), dict(opcode="LINEAR", flags=FLAG_ACCUMULATE | FLAG_GATE)],
    "norm of a store": [
        dict(opcode="NORM", flags=FLAG_NEXT, beats=2), dict(opcode="STORE")],
    "norm of a norm": [
        dict(opcode="NORM", flags=FLAG_NEXT, beats=2), dict(opcode="NORM", flags=FLAG_NEXT)],
    "norm of the wrong length": [
        dict(opcode="NORM", flags=FLAG_NEXT, beats=2), dict(opcode="LINEAR", blocks=3)],
    "norm at the end": [dict(opcode="NORM", flags=FLAG_NEXT, beats=2), dict(opcode="END")],
}
DEPTH = 160


def simulate(dut, bench, background=(), cycles=50_000):
    """Run ``bench`` to its end; fail (not hang) if it is still running after ``cycles``."""
    run_simulation(dut, bench, background=(*background, watchdog(cycles)))


class SequencerBench(wiring.Component):
    """The sequencer with its program in on-chip memory; the datapath side is open."""

    def __init__(self, config, init):
        self._config, self._init = config, init
        self.sequencer = Sequencer(config)        # the testbench watches its memory port
        super().__init__({
            "run": In(stream.Signature(8)),
            "finished": Out(stream.Signature(run_result_layout())),
            "position": In(32), "tokens": In(32), "program": In(32), "steps": In(32),
            "busy": Out(1), **{name: Out(32) for name in CONTROLLER_COUNTERS},
            "execute": Out(ExecuteSignature()),
            "unit_memory": In(MemoryPortSignature(config.memory)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer = sequencer = self.sequencer
        m.submodules.memory = memory = OnChipMemory(self._config.memory, DEPTH, self._init)
        wiring.connect(m, sequencer.memory, memory.port)
        wiring.connect(m, wiring.flipped(self.run), sequencer.run)
        wiring.connect(m, sequencer.finished, wiring.flipped(self.finished))
        wiring.connect(m, sequencer.execute, wiring.flipped(self.execute))
        wiring.connect(m, wiring.flipped(self.unit_memory), sequencer.unit_memory)
        for name in ("position", "tokens", "program", "steps"):
            m.d.comb += getattr(sequencer, name).eq(getattr(self, name))
        for name in ("busy",) + CONTROLLER_COUNTERS:
            m.d.comb += getattr(self, name).eq(getattr(sequencer, name))
        return m


def image(config, programs):
    """The programs' instructions as memory words, each program at its address."""
    word_bytes = config.data_width // 8
    init = [0] * DEPTH
    for address, program in programs:
        raw = b"".join(encode_instruction(**fields) + bytes(-32 % word_bytes)
                       for fields in program)
        for i in range(0, len(raw), word_bytes):
            init[address + i // word_bytes] = int.from_bytes(raw[i:i + word_bytes], "little")
    return init


def expected_commands(opcode, flags):
    """The commands an instruction hands out (an accumulating or gating LINEAR also
    reads; a NORM of the next LINEAR's output reads its gains only)."""
    names = set(COMMANDS_OF[NAMES[opcode]])
    if NAMES[opcode] == "LINEAR" and flags & (FLAG_ACCUMULATE | FLAG_GATE):
        names.add("reader")
    if NAMES[opcode] == "NORM" and flags & FLAG_NEXT:
        names = {"gains"}
    return names


class StubDatapath:
    """Takes commands, moves words, says done; notes what the counters should be."""

    def __init__(self, dut, rng, stall, block=1):
        self.dut, self.rng, self.stall, self.block = dut, rng, stall, block
        self.reset()

    def reset(self):
        self.executed, self.steps, self.busy = [], [], 0
        self.kind_cycles = {name: 0 for name in set(COUNTER_OF_OPCODE.values())}
        self.words = {client: 0 for client in set(CLIENT_OF_OPCODE.values())}
        self.current = None

    async def run(self, ctx):
        dut, rng = self.dut, self.rng
        execute, port, memory = dut.execute, dut.unit_memory, dut.sequencer.memory
        commands = [getattr(execute.commands, name) for name in COMMANDS]
        cycle, fetch_at, last_word, fetching, read = 0, None, None, False, False
        while True:
            now = self.current
            readies = [int(rng.random() >= self.stall) for _ in COMMANDS]
            for command, ready in zip(commands, readies):
                ctx.set(command.ready, ready)
            ctx.set(execute.done, int(now is not None and now["done_at"] is not None
                                      and cycle >= now["done_at"]))
            reading = now is not None and now["read"] == "command"
            ctx.set(port.read_cmd.valid, reading)
            ctx.set(port.read_cmd.payload, {"addr": 3, "words": now["words"] if reading else 1})
            data_ready = int(rng.random() >= self.stall)
            ctx.set(port.read_data.ready, data_ready)
            (_, _, start, opcode, flags, waiting, done, busy, *valids, cmd_ready, data_valid,
             run, fetch, word, word_last, step) = await ctx.tick().sample(
                execute.start, execute.instruction.opcode, execute.instruction.flags,
                execute.waiting, execute.done, dut.busy, *(c.valid for c in commands),
                port.read_cmd.ready, port.read_data.valid,
                dut.run.valid & dut.run.ready, memory.read_cmd.valid,
                memory.read_data.valid & memory.read_data.ready, memory.read_data.payload.last,
                execute.step)
            self.busy += busy
            # The fetch: its read command right after the RUN or the last instruction's
            # done, the decode right after its last word; after a step's END, once what
            # a block read held past it is dropped.
            if run:
                fetch_at = cycle + 1
            if fetch and not fetching and now is None:
                assert fetch_at is None or cycle == fetch_at, "the fetch starts at once"
                read = True
            fetching = fetch
            if word and word_last and now is None:
                last_word = cycle
            if start:
                assert now is None and not any(valids), "a new instruction over an old one"
                if self.block == 1:
                    assert cycle == last_word + 1, "the decode follows the last word"
                elif read:      # a block read: a cycle to leave the queue, then the decode
                    assert cycle == last_word + 2, "the decode follows the block's words"
                else:           # the next instruction of the block: from the queue at once
                    assert cycle == fetch_at + 1, "the decode follows the queue"
                read = False
                now = self.current = self.begin(cycle, opcode, flags)
            for name, valid, ready in zip(COMMANDS, valids, readies):
                if valid:
                    assert now is not None and name in now["expected"], f"{name} offered"
                if valid and ready:
                    assert name not in now["taken"], f"{name} taken twice"
                    now["taken"].add(name)
                    if now["taken"] == now["expected"]:
                        now["last_take"] = cycle
                        self.after_commands(now, cycle)
            if reading and cmd_ready:
                now["read"] = "data"
            if now is not None and now["read"] == "data" and data_valid and data_ready:
                now["left"] -= 1
                self.words[now["client"]] += 1
                if now["left"] == 0:
                    now["read"] = None
                    now["done_at"] = cycle + 1 + rng.randrange(3)
            if waiting:
                assert now is not None and now["last_take"] is not None
                if now["first_wait"] is None:
                    now["first_wait"] = cycle
                    assert cycle == now["last_take"] + 2, "done is looked at 2 cycles later"
                if done:
                    name = NAMES[now["opcode"]]
                    self.kind_cycles[COUNTER_OF_OPCODE[name]] += cycle - now["decoded"]
                    self.executed.append(name)
                    self.steps.append(step)
                    self.current, fetch_at = None, cycle + 1
            if self.steps and step != self.steps[-1]:
                fetch_at = None                 # the next step's fetch
            cycle += 1

    def begin(self, cycle, opcode, flags):
        name = NAMES[opcode]
        return {"opcode": opcode, "decoded": cycle, "expected": expected_commands(opcode, flags),
                "taken": set(), "last_take": None, "first_wait": None, "done_at": None,
                "client": CLIENT_OF_OPCODE.get(name), "read": None,
                "words": 1 + self.rng.randrange(3), "left": 0}

    def after_commands(self, now, cycle):
        """The instruction's units run: a memory client reads a few words first."""
        if now["client"] is not None:
            now["read"], now["left"] = "command", now["words"]
        else:
            now["done_at"] = cycle + 1 + self.rng.randrange(4)


@pytest.mark.parametrize("preset,block", [("tiny", 1), ("ulx3s", 1), ("tiny", 4), ("ulx3s", 2)])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_sequencer_runs_programs_against_a_stub_datapath(preset, block, traffic):
    """With ``fetch_block`` > 1 the instructions are read that many at a time: a block
    read only when the queue is empty, the rest decoded straight from the queue, and a
    block's words past END (counted in fetch_words) never executed, also across runs."""
    config = dataclasses.replace(ACCELERATOR_PRESETS[preset], fetch_block=block)
    per_instruction = instruction_words(config.data_width // 8)
    good, bad = 0, 48
    refused = {name: 64 + 16 * index for index, name in enumerate(REFUSED)}
    programs = [(good, PROGRAM), (bad, BAD_PROGRAM),
                *((refused[name], program) for name, program in REFUSED.items())]
    dut = SequencerBench(config, image(config, programs))
    rng = random.Random(zlib.crc32(f"{preset} {block} {traffic}".encode()))
    stub = StubDatapath(dut, rng, traffic.stall, block)
    tokens, capacity, most = config.max_tokens, config.attention.capacity, design_steps(config)
    # (program, position, tokens, steps, status, the instructions that run in each step,
    # instructions fetched in each step)
    runs = [(good, 0, tokens, 1, "OK", PROGRAM[:-1], len(PROGRAM)),
            (bad, 0, 1, 1, "BAD_OPCODE", BAD_PROGRAM[:1], 2),
            *((refused[name], 0, 1, 1, "BAD_OPCODE", program[:1], 2)
              for name, program in REFUSED.items()),
            (good, 0, 0, 1, "BAD_TOKENS", [], 0),
            (good, 0, config.max_tokens + 1, 1, "BAD_TOKENS", [], 0),
            (good, capacity, 1, 1, "BAD_POSITION", [], 0),
            (good, capacity - 1, 1, 1, "OK", PROGRAM[:-1], len(PROGRAM)),
            # Steps: one token each, the program again from the top after each END, on a
            # design that looks up its embeddings and scores its head (design_steps).
            (good, 0, 1, 0, "BAD_STEPS", [], 0),
            (good, 0, 1, most + 1, "BAD_STEPS", [], 0),
            *([(good, 0, 2, 2, "BAD_STEPS", [], 0)] if tokens > 1 else []),
            *([(good, capacity - 3, 1, 3, "OK", PROGRAM[:-1], len(PROGRAM)),
               (good, capacity - 2, 1, 3, "BAD_POSITION", [], 0),
               (bad, 0, 1, 3, "BAD_OPCODE", BAD_PROGRAM[:1], 2)] if most > 1 else [])]

    async def bench(ctx):
        for number, (program, position, count, steps, status, ran, fetched) in enumerate(runs):
            # A refused run makes no step; a run that ends in BAD_OPCODE its first.
            made = steps if status == "OK" else int(bool(ran))
            stub.reset()
            ctx.set(dut.program, program)
            ctx.set(dut.position, position)
            ctx.set(dut.tokens, count)
            ctx.set(dut.steps, steps)
            await stream_send(ctx, dut.run, [number + 7], rng, traffic.idle)
            finished, = await stream_receive(ctx, dut.finished, 1, rng, traffic.stall)
            # Every RUN, refused ones too, leaves its argument (the host's tag) behind.
            assert ctx.get(dut.sequencer.run_tag) == number + 7
            got = {name: ctx.get(getattr(dut, name)) for name in CONTROLLER_COUNTERS}
            # How the run ended: its status and the counters' final values.
            assert (finished.status, finished.runs, finished.cycles) == \
                (STATUS[status], got["runs"], got["cycles"])
            assert stub.executed == [fields["opcode"] for fields in ran] * made
            assert stub.steps == [step for step in range(made) for _ in ran]
            assert got["runs"] == number + 1
            assert got["cycles"] == stub.busy
            # fetch_cycles counts the fetches and the PREFETCHes' execution.
            units = {name: cycles for name, cycles in stub.kind_cycles.items()
                     if name != "fetch_cycles"}
            for counter, cycles in units.items():
                assert got[counter] == cycles, counter
            assert got["fetch_cycles"] == stub.busy - sum(units.values())
            assert got["fetch_words"] == made * -(-fetched // block) * block * per_instruction
            for client, words in stub.words.items():
                assert got[f"{client}_words"] == words, client

    simulate(dut, bench, background=[stub.run])



@pytest.mark.parametrize("preset", ["tiny", "ulx3s"])
def test_sequencer_verilog_has_no_always_block_that_never_runs(preset):
    """Verilator never runs an ``always @*`` that only assigns a constant (see
    ``tests/hw/test_link.py``); the sequencer's Verilog has none."""
    never_runs = re.compile(r"always @\*\n\s*[^\n]*? = \d+'[hbd][0-9a-fA-F_]+;")
    text = verilog.convert(Sequencer(ACCELERATOR_PRESETS[preset]), name="sequencer")
    assert never_runs.findall(text) == []
