"""What the controller's sequencer and datapath agree on (docs/accelerator.md).

The instruction as a layout, the commands each opcode hands to the units, which memory
client each opcode is, the counters, and :class:`ExecuteSignature`, the one connection
between :class:`~.sequencer.Sequencer` and :class:`~.datapath.Datapath`.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import run_result_layout
from ..memory.port import MemoryPortSignature
from .isa import (FIELDS, FLAG_ACCUMULATE, FLAG_AT_STEP, FLAG_GATE, FLAG_NEXT,
                  INSTRUCTION_BYTES, MAX_STEPS, OPCODE_BITS)

__all__ = ["instruction_layout", "accumulates", "gates", "at_step", "norms_next", "CLIENTS",
           "UNIT_CLIENTS", "CLIENT_OF_OPCODE", "WORD_COUNTERS", "CONTROLLER_COUNTERS",
           "COUNTER_OF_OPCODE", "COMMANDS", "COMMANDS_OF", "commands_of", "ExecuteSignature",
           "controller_members", "weight_clients"]

_FORMAT_BITS = {"B": 8, "H": 16, "I": 32}

#: The memory's clients: the instruction fetch, then the datapath's units. One has the
#: port at a time; between instructions, the fetch.
CLIENTS = ("fetch", "move", "norm", "linear", "attend", "head")
UNIT_CLIENTS = CLIENTS[1:]
#: Which unit client the executing instruction is.
CLIENT_OF_OPCODE = {"LOAD": "move", "STORE": "move", "EMBED": "move", "NORM": "norm",
                    "LINEAR": "linear", "ATTEND": "attend", "HEAD": "head"}


def weight_clients(config) -> tuple:
    """The unit clients that read through the weight port (``config.weight_port``; none
    without one), the TLMM's first (its weight reader's, or with ``config.weight_queue``
    its prefetcher's): without a weight queue it has the port whenever no other's
    instruction executes; with one they all read at once through an arbiter."""
    if not config.weight_port:
        return ()
    return (("linear",) + (("head",) if config.head == "device" else ())
            + (("attend",) if config.kv_reads == "weights" else ()))


#: Memory words (read and written) that each client moved in the last run.
WORD_COUNTERS = tuple(f"{client}_words" for client in CLIENTS)
CONTROLLER_COUNTERS = ("cycles", "fetch_cycles", "move_cycles", "norm_cycles", "linear_cycles",
                       "attend_cycles", "head_cycles", "runs") + WORD_COUNTERS
#: The cycle counter that an executing instruction of each opcode adds to.
#: A PREFETCH counts as fetching: it only hands the next matrix to the weight queue.
COUNTER_OF_OPCODE = {"LOAD": "move_cycles", "STORE": "move_cycles", "EMBED": "move_cycles",
                     "NORM": "norm_cycles", "LINEAR": "linear_cycles",
                     "ATTEND": "attend_cycles", "HEAD": "head_cycles",
                     "PREFETCH": "fetch_cycles"}

#: The commands of an instruction, one per unit that takes one ("memory" is the move
#: client's read or write command); all of an instruction's are offered together.
COMMANDS = ("writer", "reader", "memory", "gains", "tlmm", "feeder",
            "attention", "embed", "head", "prefetch")
#: The commands each opcode starts with (a LINEAR that accumulates also reads its
#: destination through ``reader``, one that gates its gate vector: :func:`commands_of`).
COMMANDS_OF = {
    "LOAD": ("writer", "memory"), "STORE": ("reader", "memory"),
    "NORM": ("reader", "gains"), "LINEAR": ("tlmm", "feeder", "writer"),
    "ATTEND": ("attention", "reader", "writer"),
    "EMBED": ("embed", "reader", "writer"), "HEAD": ("head", "writer"),
    "PREFETCH": ("prefetch",),
}


def instruction_layout() -> data.FlexibleLayout:
    """The 32-byte instruction of ``isa.FIELDS`` as a layout (little endian, byte offsets)."""
    return data.FlexibleLayout(8 * INSTRUCTION_BYTES, {
        name: data.Field(unsigned(_FORMAT_BITS[fmt]), 8 * offset) for name, offset, fmt in FIELDS})


def accumulates(instruction):
    """Whether an instruction (a view of :func:`instruction_layout`) adds to its destination."""
    return (instruction.flags & FLAG_ACCUMULATE) != 0


def gates(instruction):
    """Whether a LINEAR (a view of :func:`instruction_layout`) fuses the FFN gating: its
    output is ``up``, the gate vector is read from ``src`` (``FLAG_GATE``)."""
    return (instruction.flags & FLAG_GATE) != 0


def at_step(instruction):
    """Whether a LOAD or STORE (a view of :func:`instruction_layout`) moves its words at
    the run's step (``FLAG_AT_STEP``)."""
    return (instruction.flags & FLAG_AT_STEP) != 0


def norms_next(instruction):
    """Whether a NORM (a view of :func:`instruction_layout`) norms the next LINEAR's
    output (``FLAG_NEXT``): it reads its gains only, the LINEAR brings the values."""
    return (instruction.flags & FLAG_NEXT) != 0


def commands_of(opcode_name: str) -> int:
    """The bits of :data:`COMMANDS` an opcode starts with, before accumulation."""
    return sum(1 << COMMANDS.index(name) for name in COMMANDS_OF.get(opcode_name, ()))


def controller_members(config) -> dict:
    """The controller's ports (the sequencer has them too, plus its side of the datapath):
    RUN and how it ended (:func:`~tritium.hw.layouts.run_result_layout`), the last RUN's
    argument (``run_tag``: the host's tag for it, which tells a lost RUN from one whose
    reply was lost), the registers, the counters and the memory port of the
    :class:`~tritium.hw.config.AcceleratorConfig` ``config``, and its weight port
    (``weights``) if it has one of its own (``config.weight_port``)."""
    return {
        "run": In(stream.Signature(8)),
        "finished": Out(stream.Signature(run_result_layout())),
        "position": In(32), "tokens": In(32), "program": In(32), "steps": In(32),
        "status": Out(8), "run_tag": Out(8), "busy": Out(1),
        **{name: Out(32) for name in CONTROLLER_COUNTERS},
        "memory": Out(MemoryPortSignature(config.memory)),
        **({"weights": Out(MemoryPortSignature(config.weight_memory))}
           if config.weight_port else {}),
    }


class ExecuteSignature(wiring.Signature):
    """The sequencer's side of its connection to the datapath.

    Members
    -------
    instruction : ``Out(instruction_layout())``
        The last fetched instruction (a register; it shifts while the next one arrives).
    opcode : ``Out(OPCODE_BITS)``
        The opcode of the last decoded instruction, END when none: the datapath routes
        its streams by it, and keeps doing so while the next instruction is fetched.
    start : ``Out(1)``
        High in the cycle an instruction with commands is decoded (``instruction`` holds
        it, ``opcode`` still the previous one): the datapath clears its per-instruction
        counts, so they are zero when the first command is offered, the next cycle.
    commands : ``Out(Signature({name: Out(stream.Signature(0))}))``, names :data:`COMMANDS`
        Each of the instruction's commands is offered (``valid``) from the cycle after
        ``start`` until its unit takes it (``ready``); payloads come from ``instruction``.
    waiting : ``Out(1)``
        Every command is taken and the sequencer waits for ``done`` (a STORE's write
        acknowledgement is taken from the memory only then).
    done : ``In(1)``
        The executing instruction's last result is stored (combinational, by ``opcode``;
        looked at only while ``waiting``).
    client : ``Out(range(len(UNIT_CLIENTS)))``
        Which unit's port the datapath connects to its own; the sequencer connects that
        to the memory while the instruction executes.
    follow : ``Out(1)``
        A NORM with ``FLAG_NEXT`` has been decoded and the LINEAR whose output it norms
        has not finished: while that LINEAR executes, the datapath hands each beat it
        writes to the norm too, and the LINEAR is done once the norm's codes are in.
    weight_client : ``In(range(len(UNIT_CLIENTS)))``
        Which unit a word the weight port delivers in this cycle goes to (the sequencer
        counts it in that unit's ``<client>_words``): with a weight queue several read
        it at once (:class:`~tritium.hw.memory.arbiter.PortArbiter`).
    step : ``Out(range(MAX_STEPS))``
        The run's step, from 0 (the ``steps`` register): the step's tokens are at
        ``position + step``, and a LOAD or STORE with ``FLAG_AT_STEP`` moves its words
        ``step`` (LOAD) or ``step + tokens`` (STORE) words past its ``address``.
    """

    def __init__(self):
        super().__init__({
            "instruction": Out(instruction_layout()),
            "opcode": Out(OPCODE_BITS),
            "start": Out(1),
            "commands": Out(wiring.Signature({
                name: Out(stream.Signature(unsigned(0))) for name in COMMANDS})),
            "waiting": Out(1),
            "done": In(1),
            "client": Out(range(len(UNIT_CLIENTS))),
            "follow": Out(1),
            "weight_client": In(range(len(UNIT_CLIENTS))),
            "step": Out(range(MAX_STEPS)),
        })
