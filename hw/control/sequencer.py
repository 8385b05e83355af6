"""The controller's sequencer: fetch, decode, issue, wait, and count (docs/program.md)."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..memory.mux import PortMux
from ..memory.port import MemoryPortSignature
from .interface import (CLIENT_OF_OPCODE, COMMANDS, COMMANDS_OF, CONTROLLER_COUNTERS,
                        COUNTER_OF_OPCODE, UNIT_CLIENTS, WORD_COUNTERS, ExecuteSignature,
                        accumulates, commands_of, controller_members, gates, norms_next,
                        weight_clients)
from .isa import INSTRUCTION_BYTES, OPCODES, STATUS, design_opcodes, design_steps

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Run the program at ``program`` one instruction at a time through the datapath.

    A RUN checks ``tokens``, ``steps`` and ``position`` (a bad value ends the run at once
    with its status, and nothing executes), then repeats: fetch an instruction's words
    over the memory port, decode it, offer its commands on ``execute.commands`` until
    each is taken, wait for ``execute.done``; until END, or an opcode the design does
    not have (:func:`.isa.design_opcodes`), which ends the run with BAD_OPCODE. An END
    before the run's last step (``steps`` > 1: one token a step, on a design of
    :func:`.isa.design_steps` > 1) starts the program again at ``program`` for the next
    step (``execute.step``), instructions a block read held past END dropped. The run's
    status, the ``runs`` counter and its ``cycles`` (all its steps') then go out on
    ``finished``.

    The memory port is the fetch's, except while an instruction that moves words
    executes (from d + 1 to w below): then it is ``unit_memory``, the datapath's, which
    connects the unit named by ``execute.client``. A unit moves words only between its
    command and the instruction's ``done``, so the switch never cuts a transfer.

    Timing, in cycles (what the counters and the performance model see): the read
    command is offered until the memory takes it, each instruction word is taken in the
    cycle it arrives, then a cycle decodes (cycle d). The commands are offered from
    d + 1; if the last one is taken in cycle t, ``done`` is looked at from t + 2 on, and
    ``done`` in cycle w puts the next read command out in w + 1. ``fetch_cycles`` counts
    the cycles from the read command to the decode, the opcode's counter
    (:data:`COUNTER_OF_OPCODE`) those from d + 1 to w, ``cycles`` both (``busy``). A
    RUN's check and the ``finished`` handshake count nowhere. With ``fetch_block`` > 1
    the read command asks for that many instructions' words, which go into a queue;
    the cycle after the last word an instruction leaves the queue, and the decode
    follows; the next instruction leaves the queue in w + 1 (no read while the queue
    holds one), and the decode follows.

    Members
    -------
    run : ``In(stream.Signature(8))``
    finished : ``Out(stream.Signature(run_result_layout()))`` (status, runs, cycles)
    position, tokens, program, steps : ``In(32)``
    status : ``Out(8)``; run_tag : ``Out(8)`` (the last RUN's argument); busy : ``Out(1)``
    cycles, ..., runs, fetch_words, ..., attend_words : ``Out(32)`` (:data:`CONTROLLER_COUNTERS`)
    execute : ``Out(ExecuteSignature())``
    unit_memory : ``In(MemoryPortSignature(config.memory))``
    memory : ``Out(MemoryPortSignature(config.memory))``
    unit_weights : ``In(MemoryPortSignature(config.weight_memory))``;
    weights : ``Out(MemoryPortSignature(config.weight_memory))``
        Only with ``config.weight_port``: the TLMM's and the head's port (and the KV
        reader's, ``kv_reads = "weights"``), passed through so its words count in
        ``linear_words``, ``head_words`` or ``attend_words`` (in bus words,
        ``weight_port_words`` each).
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({**controller_members(config),
                          "execute": Out(ExecuteSignature()),
                          "unit_memory": In(MemoryPortSignature(config.memory)),
                          **({"unit_weights": In(MemoryPortSignature(config.weight_memory))}
                             if config.weight_port else {})})

    def elaborate(self, platform):
        m = Module()
        memory = self._config.memory
        m.submodules.ports = ports = PortMux(memory, ("fetch", "units"))
        fetch = MemoryPortSignature(memory).create(path=("fetch",))
        wiring.connect(m, fetch, ports.fetch)
        wiring.connect(m, wiring.flipped(self.unit_memory), ports.units)
        wiring.connect(m, ports.memory, wiring.flipped(self.memory))
        if self._config.weight_port:
            wiring.connect(m, wiring.flipped(self.unit_weights), wiring.flipped(self.weights))
        pending = self._issue(m)
        fetching, executing = self._sequence(m, fetch, pending)
        units, client = self._owner(m, executing)
        m.d.comb += [ports.select.eq(units), self.execute.client.eq(client)]
        self._count(m, fetching, executing, units, client)
        return m

    def _issue(self, m):
        """Offer each pending command until its unit takes it; returns the pending bits,
        which the decode sets."""
        pending = Signal(len(COMMANDS))
        for index, name in enumerate(COMMANDS):
            command = getattr(self.execute.commands, name)
            m.d.comb += command.valid.eq(pending[index])
            with m.If(command.valid & command.ready):
                m.d.sync += pending[index].eq(0)
        return pending

    def _sequence(self, m, fetch, pending):
        """The run: check, then fetch, decode, issue and wait per instruction. Returns
        (fetching, executing): which of the two the current cycle counts as."""
        cfg, execute = self._config, self.execute
        instruction, opcode = execute.instruction, execute.opcode
        words = -(-8 * INSTRUCTION_BYTES // cfg.data_width)     # bus words per instruction
        pc = Signal(32)
        fetching, executing = Signal(), Signal()
        step, looping = execute.step, design_steps(cfg) > 1
        # A NORM with FLAG_NEXT waits for its LINEAR: the beats it said it norms.
        follow, follow_beats = execute.follow, Signal.like(instruction.beats)
        m.d.comb += [fetch.read_cmd.payload.addr.eq(pc),
                     fetch.read_cmd.payload.words.eq(words * cfg.fetch_block)]
        queue = None
        if cfg.fetch_block > 1:
            m.submodules.fetched = queue = SyncFIFOBuffered(width=8 * INSTRUCTION_BYTES,
                                                            depth=cfg.fetch_block)
            # Between runs the queue drains (what a block read past END holds is never
            # executed), and a RUN waits until it is empty.
            with m.If(~self.busy):
                m.d.comb += queue.r_en.eq(1)

        def start(bits):
            """Decode: the instruction's commands (``bits`` of COMMANDS) pending."""
            m.d.sync += pending.eq(bits)
            m.d.comb += execute.start.eq(1)
            m.next = "issue"

        def refuse():
            """Decode: not an instruction of this design; the run ends with BAD_OPCODE."""
            m.d.sync += [self.status.eq(STATUS["BAD_OPCODE"]), opcode.eq(OPCODES["END"])]
            m.next = "finish"

        with m.FSM():
            with m.State("idle"):
                m.d.comb += self.run.ready.eq(1 if queue is None else queue.level == 0)
                with m.If(self.run.valid & self.run.ready):
                    m.d.sync += [pc.eq(self.program), opcode.eq(OPCODES["END"]), follow.eq(0),
                                 step.eq(0)]
                    steps = self.steps
                    with m.If((self.tokens == 0) | (self.tokens > cfg.max_tokens)):
                        m.d.sync += self.status.eq(STATUS["BAD_TOKENS"])
                        m.next = "finish"
                    with m.Elif((steps == 0) | (steps > design_steps(cfg)) |
                                (steps != 1) & (self.tokens != 1)):
                        m.d.sync += self.status.eq(STATUS["BAD_STEPS"])
                        m.next = "finish"
                    # Every step's token within the cache: position + steps - 1 < capacity.
                    with m.Elif(self.position + self.tokens + steps > cfg.attention.capacity + 1):
                        m.d.sync += self.status.eq(STATUS["BAD_POSITION"])
                        m.next = "finish"
                    with m.Else():
                        m.d.sync += self.status.eq(STATUS["OK"])
                        m.next = "fetch"
            if cfg.fetch_block == 1:
                self._fetch_one(m, fetch, fetching, pc, words)
            else:
                self._fetch_blocks(m, fetch, fetching, pc, words, queue)
            with m.State("decode"):
                m.d.comb += [self.busy.eq(1), fetching.eq(1)]
                m.d.sync += opcode.eq(instruction.opcode)
                with m.Switch(instruction.opcode):
                    with m.Case(OPCODES["END"]):
                        with m.If(follow):          # a NORM of a LINEAR that never came
                            refuse()
                        if looping:
                            with m.Elif(step + 1 < self.steps):     # the next step
                                m.d.sync += [step.eq(step + 1), pc.eq(self.program)]
                                m.next = "restart"
                        with m.Else():
                            m.next = "finish"
                    # Only the design's opcodes: EMBED or HEAD without their unit
                    # are unknown (the default case).
                    for name in (n for n in COMMANDS_OF if n in design_opcodes(cfg)):
                        with m.Case(OPCODES[name]):
                            self._decode(m, name, start, refuse, follow, follow_beats)
                    with m.Default():
                        refuse()
            if looping:
                with m.State("restart"):
                    # What a block read held past END is dropped before the next step.
                    m.d.comb += [self.busy.eq(1), fetching.eq(1)]
                    if queue is None:
                        m.next = "fetch"
                    else:
                        m.d.comb += queue.r_en.eq(1)
                        with m.If(queue.level == 0):
                            m.next = "fetch"
            with m.State("issue"):
                m.d.comb += [self.busy.eq(1), executing.eq(1)]
                with m.If(pending == 0):
                    m.next = "wait"
            with m.State("wait"):
                m.d.comb += [self.busy.eq(1), executing.eq(1), execute.waiting.eq(1)]
                with m.If(execute.done):
                    m.next = "fetch"
                    with m.If(opcode == OPCODES["LINEAR"]):
                        m.d.sync += follow.eq(0)
            with m.State("finish"):
                m.d.comb += [self.finished.valid.eq(1),
                             self.finished.payload.status.eq(self.status),
                             self.finished.payload.runs.eq(self.runs),
                             self.finished.payload.cycles.eq(self.cycles)]
                with m.If(self.finished.ready):
                    m.d.sync += opcode.eq(OPCODES["END"])
                    m.next = "idle"
        return fetching, executing

    def _decode(self, m, name, start, refuse, follow, follow_beats):
        """The decode of an instruction of opcode ``name``: its commands pending, or the
        run refused. After a NORM with FLAG_NEXT only PREFETCHes and then the LINEAR
        whose output it norms may come, that LINEAR of as many vector beats."""
        instruction = self.execute.instruction
        bits = commands_of(name)
        if name == "PREFETCH":
            start(bits)
        elif name == "NORM":
            with m.If(follow):
                refuse()
            with m.Elif(norms_next(instruction)):    # its gains only, into the buffer
                start(1 << COMMANDS.index("gains"))
                m.d.sync += [follow.eq(1), follow_beats.eq(instruction.beats)]
            with m.Else():
                start(bits)
        elif name == "LINEAR":
            # One that accumulates reads its destination through the reader, one that
            # gates its gate vector; not both.
            reads = accumulates(instruction) | gates(instruction)
            beats = instruction.blocks * self._config.beats_per_block
            with m.If(accumulates(instruction) & gates(instruction) |
                      follow & (beats != follow_beats)):
                refuse()
            with m.Else():
                start(Mux(reads, bits | 1 << COMMANDS.index("reader"), bits))
        else:
            with m.If(follow):
                refuse()
            with m.Else():
                start(bits)

    def _fetch_one(self, m, fetch, fetching, pc, words):
        """The fetch states reading one instruction at a time into ``instruction``."""
        instruction, width = self.execute.instruction, self._config.data_width
        with m.State("fetch"):
            m.d.comb += [self.busy.eq(1), fetching.eq(1), fetch.read_cmd.valid.eq(1)]
            with m.If(fetch.read_cmd.ready):
                m.d.sync += pc.eq(pc + words)
                m.next = "fetch_data"
        with m.State("fetch_data"):
            data = fetch.read_data
            m.d.comb += [self.busy.eq(1), fetching.eq(1), data.ready.eq(1)]
            with m.If(data.valid):
                m.d.sync += instruction.eq(_shift_in(instruction.as_value(), data.payload.data,
                                                     words, width))
                with m.If(data.payload.last):
                    m.next = "decode"

    def _fetch_blocks(self, m, fetch, fetching, pc, words, queue):
        """The fetch states reading ``fetch_block`` instructions at a time into a queue,
        and again only when it is empty; an instruction leaves it for ``instruction`` in
        the cycle before its decode."""
        cfg, instruction = self._config, self.execute.instruction
        incoming = Signal(8 * INSTRUCTION_BYTES)
        part = Signal(range(words))                 # the instruction's words already in
        with m.State("fetch"):
            m.d.comb += [self.busy.eq(1), fetching.eq(1)]
            with m.If(queue.r_rdy):
                m.d.comb += queue.r_en.eq(1)
                m.d.sync += instruction.eq(queue.r_data)
                m.next = "decode"
            with m.Elif(queue.level == 0):          # (not an instruction still on its way)
                m.d.comb += fetch.read_cmd.valid.eq(1)
                with m.If(fetch.read_cmd.ready):
                    m.d.sync += pc.eq(pc + words * cfg.fetch_block)
                    m.next = "fetch_data"
        with m.State("fetch_data"):
            # Each instruction's words shift in from the top, as in _fetch_one.
            data = fetch.read_data
            value = _shift_in(incoming, data.payload.data, words, cfg.data_width)
            m.d.comb += [self.busy.eq(1), fetching.eq(1), data.ready.eq(1),
                         queue.w_data.eq(value)]
            with m.If(data.valid):
                m.d.sync += incoming.eq(value)
                m.d.comb += queue.w_en.eq(part == words - 1)
                if words > 1:
                    m.d.sync += part.eq(Mux(part == words - 1, 0, part + 1))
                with m.If(data.payload.last):
                    m.next = "fetch"

    def _owner(self, m, executing):
        """Who has the memory port: (the datapath, which of its units); else the fetch."""
        units, client = Signal(), Signal(range(len(UNIT_CLIENTS)))
        for name, unit in CLIENT_OF_OPCODE.items():
            with m.If(executing & (self.execute.opcode == OPCODES[name])):
                m.d.comb += [units.eq(1), client.eq(UNIT_CLIENTS.index(unit))]
        return units, client

    def _count(self, m, fetching, executing, units, client):
        """The counters of the last run; a RUN clears them and counts itself in ``runs``."""
        opcode = self.execute.opcode
        with m.If(self.run.valid & self.run.ready):
            m.d.sync += [getattr(self, name).eq(0) for name in CONTROLLER_COUNTERS
                         if name != "runs"]
            m.d.sync += [self.runs.eq(self.runs + 1), self.run_tag.eq(self.run.payload)]
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(fetching):
            m.d.sync += self.fetch_cycles.eq(self.fetch_cycles + 1)
        with m.If(executing):
            for name, counter in COUNTER_OF_OPCODE.items():
                with m.If(opcode == OPCODES[name]):
                    m.d.sync += getattr(self, counter).eq(getattr(self, counter) + 1)
        # One client has the port at a time, so each word moved is that client's.
        port = self.memory
        moved = (port.read_data.valid & port.read_data.ready |
                 port.write_data.valid & port.write_data.ready)
        fetch_words, *unit_words = WORD_COUNTERS
        with m.If(moved & ~units):
            m.d.sync += getattr(self, fetch_words).eq(getattr(self, fetch_words) + 1)
        with m.If(moved & units):
            with m.Switch(client):
                for index, name in enumerate(unit_words):
                    with m.Case(index):
                        m.d.sync += getattr(self, name).eq(getattr(self, name) + 1)
        if self._config.weight_port:
            # The TLMM, the head and (kv_reads = "weights") the KV reader read the weight
            # port; each of its words is weight_port_words bus words and counts for the
            # client the datapath says it goes to, the TLMM's by default.
            weights, step = self.weights.read_data, self._config.weight_port_words
            with m.If(weights.valid & weights.ready):
                with m.Switch(self.execute.weight_client):
                    for name in weight_clients(self._config)[1:]:
                        with m.Case(UNIT_CLIENTS.index(name)):
                            counter = getattr(self, f"{name}_words")
                            m.d.sync += counter.eq(counter + step)
                    with m.Default():
                        m.d.sync += self.linear_words.eq(self.linear_words + step)


def _shift_in(held, word, words: int, width: int):
    """``held`` with the bus ``word`` shifted in from the top, for an instruction of
    ``words`` words of ``width`` bits: the first word read ends up lowest."""
    return Cat(held[width:], word) if words > 1 else word
