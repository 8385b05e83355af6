"""Command execution: each checked frame becomes memory, register or run operations and
one reply (docs/link.md)."""

from amaranth import Cat, Const, Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import REGISTERS
from ..layouts import run_result_layout
from ..memory.port import MemoryConfig, MemoryPortSignature
from ..stream import register_stage
from .movers import (BufferReader, ReadMover, WriteMover, fetch_layout, read_command_layout,
                     write_command_layout)
from .protocol import (ADDRESS_BYTES, ERR_ARGUMENT, ERR_COMMAND, ERROR, GET, INFO, INFO_BYTES,
                       READ, REPLY, RUN, RUN_BYTES, RUN_REPLY_BYTES, RUN_SET_BYTES, SET,
                       WRITE, info_bytes)
from .receiver import frame_header_layout
from .sender import reply_layout

__all__ = ["RegisterBusSignature", "CommandUnit", "Dispatcher", "Replier", "answer_layout"]

ARGUMENT_BYTES = 7                       # the longest fixed argument list (RUN's)


class RegisterBusSignature(wiring.Signature):
    """The link's view of the design's registers (32 bits each, ``index`` 0-255).

    Members
    -------
    index : ``Out(8)``
    write_data : ``Out(32)``
    write : ``Out(1)``
        Strobe: store ``write_data`` (only when ``exists`` and ``writable``).
    read_data : ``In(32)``
    exists, writable : ``In(1)``
        What the register file says of ``index`` (combinationally).
    """

    def __init__(self):
        super().__init__({"index": Out(8), "write_data": Out(32), "write": Out(1),
                          "read_data": In(32), "exists": In(1), "writable": In(1)})


def answer_layout() -> data.StructLayout:
    """A reply of ``length`` bytes, the low ones of ``content`` (INFO's is the longest)."""
    return data.StructLayout({"type": unsigned(8), "length": unsigned(16),
                              "content": unsigned(8 * INFO_BYTES)})


class CommandUnit(wiring.Component):
    """Execute one checked frame at a time and send its reply.

    A frame stays on ``frame`` (its payload in the frame buffer) until its reply has
    been handed to the sender; then the unit takes it, which frees the buffer.

    Its parts, each with one job: the :class:`Dispatcher` checks a frame and starts
    its command; the :class:`~.movers.BufferReader` reads the frame buffer for the
    dispatcher's arguments and WRITE's words; the :class:`~.movers.WriteMover` and
    :class:`~.movers.ReadMover` move WRITE's and READ's words (READ's reply is the read
    mover's); the :class:`Replier` sends every other reply. Two parts that share a
    stream take turns on it: only one of them is ever busy.

    Members
    -------
    frame : ``In(stream.Signature(frame_header_layout()))``
    buffer_addr : ``Out(range(max_payload))``
    buffer_data : ``In(8)``
        The frame buffer's read port (data one cycle after the address).
    reply : ``Out(stream.Signature(reply_layout()))``
    payload : ``Out(stream.Signature(8))``
    memory : ``Out(MemoryPortSignature(memory))``
    registers : ``Out(RegisterBusSignature())``
    run : ``Out(stream.Signature(8))``
        RUN's argument, to the controller.
    finished : ``In(stream.Signature(run_result_layout()))``
        How the run ended (status, runs, cycles): RUN's reply.
    """

    def __init__(self, memory: MemoryConfig, memory_words: int, max_payload: int, design: int):
        word_bytes = memory.bytes_per_word
        if word_bytes & (word_bytes - 1):
            raise ValueError(f"the host link needs a power-of-two bus width in bytes, "
                             f"not {word_bytes}")
        if max_payload < ADDRESS_BYTES + word_bytes or max_payload >= 2 ** 16:
            raise ValueError(f"max_payload must hold an address and a word and be below "
                             f"65536, not {max_payload}")
        if max_payload // word_bytes >= 2 ** memory.len_width:
            raise ValueError(f"max_payload {max_payload} is more words than one memory "
                             f"command carries ({2 ** memory.len_width - 1})")
        self._memory, self._memory_words = memory, memory_words
        self._max_payload, self._design = max_payload, design
        super().__init__({
            "frame": In(stream.Signature(frame_header_layout())),
            "buffer_addr": Out(range(max_payload)),
            "buffer_data": In(8),
            "reply": Out(stream.Signature(reply_layout())),
            "payload": Out(stream.Signature(8)),
            "memory": Out(MemoryPortSignature(memory)),
            "registers": Out(RegisterBusSignature()),
            "run": Out(stream.Signature(8)),
            "finished": In(stream.Signature(run_result_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        memory, max_payload = self._memory, self._max_payload
        # Frame-buffer bytes shift in at the top of the buffer reader's data: after the
        # first ARGUMENT_BYTES they are the arguments; after a word's bytes, the word.
        width = max(8 * ARGUMENT_BYTES, memory.data_width)
        m.submodules.buffer = buffer = BufferReader(max_payload, width)
        m.submodules.dispatcher = dispatcher = Dispatcher(
            memory, self._memory_words, max_payload, self._design, width)
        m.submodules.writer = writer = WriteMover(memory, max_payload, width)
        m.submodules.reader = reader = ReadMover(memory, max_payload)
        m.submodules.replier = replier = Replier()
        port, tag = wiring.flipped(self.memory), self.frame.payload.tag

        m.d.comb += [self.buffer_addr.eq(buffer.buffer_addr),
                     buffer.buffer_data.eq(self.buffer_data),
                     dispatcher.arguments.eq(buffer.data[width - 8 * ARGUMENT_BYTES:]),
                     dispatcher.fetched.eq(buffer.idle),
                     writer.word.eq(buffer.data[width - memory.data_width:]),
                     writer.fetched.eq(buffer.idle),
                     replier.tag.eq(tag), reader.tag.eq(tag)]
        _take_turns(m, buffer.request, dispatcher.fetch, writer.fetch)
        wiring.connect(m, wiring.flipped(self.frame), dispatcher.frame)
        wiring.connect(m, dispatcher.registers, wiring.flipped(self.registers))
        wiring.connect(m, dispatcher.run, wiring.flipped(self.run))
        wiring.connect(m, wiring.flipped(self.finished), dispatcher.finished)

        wiring.connect(m, dispatcher.write, writer.command)
        wiring.connect(m, writer.done, dispatcher.written)
        for channel in ("write_cmd", "write_data", "write_done"):
            wiring.connect(m, getattr(writer, channel), getattr(port, channel))
        wiring.connect(m, dispatcher.read, reader.command)
        wiring.connect(m, reader.done, dispatcher.read_done)
        for channel in ("read_cmd", "read_data"):
            wiring.connect(m, getattr(reader, channel), getattr(port, channel))
        # Registered: an answer's type, length and content are chosen by the
        # dispatcher's state and the frame's type and arguments, which would otherwise
        # run on into the replier's header logic in the same cycle.
        register_stage(m, dispatcher.answer, replier.answer, "answer")
        wiring.connect(m, replier.done, dispatcher.answered)

        # READ's reply is the read mover's, every other the replier's.
        _take_turns(m, self.reply, replier.reply, reader.reply)
        _take_turns(m, self.payload, replier.payload, reader.payload)
        return m


def _take_turns(m, target, *sources):
    """Put ``sources``, streams of which at most one is ever valid, onto ``target``."""
    m.d.comb += target.valid.eq(Cat(source.valid for source in sources).any())
    m.d.comb += [source.ready.eq(target.ready) for source in sources]
    for index, source in enumerate(sources):
        with (m.If if index == 0 else m.Elif)(source.valid):
            m.d.comb += target.payload.eq(source.payload)


class Dispatcher(wiring.Component):
    """Check each frame and start its command; take the frame once its reply is out.

    A frame with a receiver error is rejected at once. Otherwise its first
    ARGUMENT_BYTES payload bytes are fetched (``fetch``; they are in ``arguments`` once
    ``fetched``), then the command is checked and started: INFO, SET and GET answer
    at once; WRITE and READ go to their movers; RUN (with position and tokens, after
    setting those two registers) goes to the controller and answers with how the run
    ended. A bad argument or an unknown command is answered with ERROR.

    Members
    -------
    frame : ``In(stream.Signature(frame_header_layout()))``
    fetch : ``Out(stream.Signature(fetch_layout(max_payload, width)))``
    arguments : ``In(8 * ARGUMENT_BYTES)``; fetched : ``In(1)``
    registers : ``Out(RegisterBusSignature())``
    run : ``Out(stream.Signature(8))``
    finished : ``In(stream.Signature(run_result_layout()))``
    write : ``Out(stream.Signature(write_command_layout(memory, max_payload)))``
    written : ``In(stream.Signature(0))``
    read : ``Out(stream.Signature(read_command_layout()))``
    read_done : ``In(stream.Signature(0))``
    answer : ``Out(stream.Signature(answer_layout()))``; answered : ``In(stream.Signature(0))``
    """

    def __init__(self, memory: MemoryConfig, memory_words: int, max_payload: int, design: int,
                 width: int):
        self._memory, self._memory_words = memory, memory_words
        self._max_payload, self._design = max_payload, design
        done = stream.Signature(unsigned(0))
        super().__init__({
            "frame": In(stream.Signature(frame_header_layout())),
            "fetch": Out(stream.Signature(fetch_layout(max_payload, width))),
            "arguments": In(8 * ARGUMENT_BYTES),
            "fetched": In(1),
            "registers": Out(RegisterBusSignature()),
            "run": Out(stream.Signature(8)),
            "finished": In(stream.Signature(run_result_layout())),
            "write": Out(stream.Signature(write_command_layout(memory, max_payload))),
            "written": In(done),
            "read": Out(stream.Signature(read_command_layout())),
            "read_done": In(done),
            "answer": Out(stream.Signature(answer_layout())),
            "answered": In(done),
        })

    def elaborate(self, platform):
        m = Module()
        frame, args = self.frame.payload, self.arguments
        # The arguments fetch is the only one; its request is driven whole and always
        # (a constant on part of a signal set elsewhere in a branch comes out of Amaranth's
        # Verilog as an ``always @*`` that reads nothing, which Verilator never runs).
        m.d.comb += [self.registers.index.eq(args[:8]), self.registers.write_data.eq(args[8:40]),
                     self.run.payload.eq(args[:8]),
                     self.fetch.payload.at.eq(0), self.fetch.payload.count.eq(ARGUMENT_BYTES),
                     self.fetch.payload.resume.eq(0)]
        checks = self._checks(m)
        result = Signal.like(self.finished.payload, name="run_result")
        # GET answers with the register's value registered every cycle: the index has
        # been the argument since the fetch, so it is the value as of the cycle before,
        # and the register file's read multiplexer ends at a flip-flop.
        read_value = Signal.like(self.registers.read_data, name="get_value")
        m.d.sync += read_value.eq(self.registers.read_data)
        with m.FSM():
            with m.State("idle"):
                with m.If(self.frame.valid & (frame.error != 0)):
                    self._reject(m, frame.error)
                with m.Elif(self.frame.valid):
                    m.d.comb += self.fetch.valid.eq(1)
                    with m.If(self.fetch.ready):
                        m.next = "dispatch"
            # The arguments' range checks (adders and comparators as wide as an address)
            # are registered in the cycle after the fetch, apart from the dispatch.
            with m.State("dispatch"):
                with m.If(self.fetched):
                    m.next = "decide"
            with m.State("decide"):
                self._dispatch(m, checks, read_value)
            with m.State("write"):
                m.d.comb += self.written.ready.eq(self.answer.ready)
                with m.If(self.written.valid):
                    self._answer(m, WRITE | REPLY)
            with m.State("read"):
                m.d.comb += self.read_done.ready.eq(1)
                with m.If(self.read_done.valid):
                    m.next = "release"
            # RUN with position and tokens: the two registers, then the run.
            for state, name, value, then in (("position", "position", args[8:40], "tokens"),
                                              ("tokens", "tokens", args[40:56], "run")):
                with m.State(state):
                    m.d.comb += [self.registers.index.eq(REGISTERS[name]),
                                 self.registers.write_data.eq(value),
                                 self.registers.write.eq(1)]
                    m.next = then
            with m.State("run"):
                m.d.comb += self.run.valid.eq(1)
                with m.If(self.run.ready):
                    m.next = "wait"
            # The run's result is registered before the answer, which then starts at
            # flip-flops rather than at the controller's result logic.
            with m.State("wait"):
                m.d.comb += self.finished.ready.eq(1)
                with m.If(self.finished.valid):
                    m.d.sync += result.eq(self.finished.payload)
                    m.next = "finished"
            with m.State("finished"):
                self._answer(m, RUN | REPLY, RUN_REPLY_BYTES, result)
            with m.State("reply"):
                m.d.comb += self.answered.ready.eq(1)
                with m.If(self.answered.valid):
                    m.next = "release"
            with m.State("release"):
                m.d.comb += self.frame.ready.eq(1)
                m.next = "idle"
        return m

    def _answer(self, m, kind, length=0, content=0):
        """Hand the replier a reply of type ``kind``, the ``length`` low bytes of
        ``content``; returns whether it took it (it is idle whenever this is called)."""
        answer = self.answer
        m.d.comb += [answer.valid.eq(1), answer.payload.type.eq(kind),
                     answer.payload.length.eq(length), answer.payload.content.eq(content)]
        with m.If(answer.ready):
            m.next = "reply"
        return answer.ready

    def _reject(self, m, code):
        """Reply ERROR with ``code`` (an int or the receiver's error field)."""
        code = Const(code, 8) if isinstance(code, int) else code
        self._answer(m, ERROR, 2, Cat(code, self.frame.payload.type))

    def _checks(self, m):
        """The WRITE and READ argument checks and WRITE's word count, registered every
        cycle from the frame and its arguments (stable from the fetch to the reply)."""
        frame = self.frame.payload
        word_bytes = self._memory.bytes_per_word
        address, count = self.arguments[:32], self.arguments[32:48]
        payload_words = (frame.length - ADDRESS_BYTES) >> (word_bytes.bit_length() - 1)

        def in_memory(words):
            return (address < self._memory_words) & (address + words <= self._memory_words)

        whole = ((frame.length - ADDRESS_BYTES) & (word_bytes - 1)) == 0
        checks = Signal(data.StructLayout({"write_ok": 1, "read_ok": 1,
                                           "payload_words": len(payload_words)}),
                        name="argument_checks")
        m.d.sync += [
            checks.write_ok.eq((frame.length >= ADDRESS_BYTES + word_bytes) & whole &
                               in_memory(payload_words)),
            checks.read_ok.eq((frame.length == 6) & (count != 0) &
                              (count <= self._max_payload // word_bytes) & in_memory(count)),
            checks.payload_words.eq(payload_words),
        ]
        return checks

    def _dispatch(self, m, checks, read_value):
        """Start the command whose arguments ``checks`` (:meth:`_checks`) accepted, or
        reject it; GET answers ``read_value``."""
        frame, registers = self.frame.payload, self.registers
        word_bytes = self._memory.bytes_per_word
        address, count = self.arguments[:32], self.arguments[32:48]
        with m.Switch(frame.type):
            with m.Case(INFO):
                info = info_bytes(self._max_payload, word_bytes, self._design,
                                  self._memory.addr_width)
                with m.If(frame.length == 0):
                    self._answer(m, INFO | REPLY, INFO_BYTES, int.from_bytes(info, "little"))
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(WRITE):
                with m.If(checks.write_ok):
                    self._start(m, self.write, "write", address=address,
                                words=checks.payload_words)
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(READ):
                with m.If(checks.read_ok):
                    self._start(m, self.read, "read", address=address, count=count)
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(SET):
                with m.If((frame.length == 5) & registers.exists & registers.writable):
                    m.d.comb += registers.write.eq(self._answer(m, SET | REPLY))
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(GET):
                with m.If((frame.length == 1) & registers.exists):
                    self._answer(m, GET | REPLY, 4, read_value)
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(RUN):
                with m.If(frame.length == RUN_BYTES):
                    m.next = "run"
                with m.Elif(frame.length == RUN_SET_BYTES):
                    m.next = "position"
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Default():
                self._reject(m, ERR_COMMAND)

    def _start(self, m, mover, state, **fields):
        """Hand a mover its command (it is idle whenever this is called)."""
        m.d.comb += [mover.valid.eq(1),
                     *(getattr(mover.payload, name).eq(value) for name, value in fields.items())]
        with m.If(mover.ready):
            m.next = state


class Replier(wiring.Component):
    """Send a reply: its header, then ``length`` bytes of its content, lowest first.

    An answer is taken while idle; its header goes out the next cycle, the bytes from
    the cycle after the sender takes it, and ``done`` is offered the cycle after the
    last byte is taken (after the header, for no bytes).

    Members
    -------
    answer : ``In(stream.Signature(answer_layout()))``
    tag : ``In(8)`` (the frame's)
    reply : ``Out(stream.Signature(reply_layout()))``
    payload : ``Out(stream.Signature(8))``
    done : ``Out(stream.Signature(0))``
    """

    answer: In(stream.Signature(answer_layout()))
    tag: In(8)
    reply: Out(stream.Signature(reply_layout()))
    payload: Out(stream.Signature(8))
    done: Out(stream.Signature(unsigned(0)))

    def elaborate(self, platform):
        m = Module()
        answer = Signal(answer_layout())          # what is left of it: length and content shift
        m.d.comb += [self.reply.payload.type.eq(answer.type),
                     self.reply.payload.tag.eq(self.tag),
                     self.reply.payload.length.eq(answer.length),
                     self.payload.payload.eq(answer.content[:8])]
        with m.FSM():
            with m.State("idle"):
                m.d.comb += self.answer.ready.eq(1)
                with m.If(self.answer.valid):
                    m.d.sync += answer.eq(self.answer.payload)
                    m.next = "header"
            with m.State("header"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    m.next = "bytes"
            with m.State("bytes"):
                m.d.comb += [self.payload.valid.eq(answer.length != 0),
                             self.done.valid.eq(answer.length == 0)]
                with m.If(self.payload.valid & self.payload.ready):
                    m.d.sync += [answer.content.eq(answer.content >> 8),
                                 answer.length.eq(answer.length - 1)]
                with m.If(self.done.valid & self.done.ready):
                    m.next = "idle"
        return m
