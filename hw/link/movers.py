"""The command unit's data movers (docs/link.md): frame-buffer bytes, WRITE's words into
memory, READ's words out of memory into a reply."""

from amaranth import Cat, Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..memory.port import MemoryConfig, command_layout, read_data_layout
from .protocol import ADDRESS_BYTES, READ, REPLY
from .sender import reply_layout

__all__ = ["fetch_layout", "write_command_layout", "read_command_layout", "BufferReader",
           "WriteMover", "ReadMover"]


def fetch_layout(max_payload: int, width: int) -> data.StructLayout:
    """Read ``count`` bytes from ``at``, or on from where the last read stopped (``resume``)."""
    return data.StructLayout({"at": unsigned(max_payload.bit_length()),
                              "count": unsigned((width // 8).bit_length()),
                              "resume": unsigned(1)})


def write_command_layout(memory: MemoryConfig, max_payload: int) -> data.StructLayout:
    """WRITE ``words`` words (at most a frame's) to ``address``."""
    words = max_payload // memory.bytes_per_word
    return data.StructLayout({"address": unsigned(32), "words": unsigned(words.bit_length())})


def read_command_layout() -> data.StructLayout:
    """READ ``count`` words from ``address`` (the READ frame's arguments)."""
    return data.StructLayout({"address": unsigned(32), "count": unsigned(16)})


class BufferReader(wiring.Component):
    """Read bytes of the frame buffer into a shift register, a byte per cycle.

    Each byte read shifts in at the top of ``data``, so after ``n`` bytes they are the
    top ``n`` bytes of ``data``, the first lowest. The buffer answers an address a cycle
    later, so a request of ``n`` bytes taken in cycle t puts out the addresses in t + 1
    to t + n and is all in ``data`` (``idle`` again) in t + n + 2. Requests are taken
    while idle.

    Members
    -------
    request : ``In(stream.Signature(fetch_layout(max_payload, width)))``
    data : ``Out(width)``
    idle : ``Out(1)``
    buffer_addr : ``Out(range(max_payload))``; buffer_data : ``In(8)``
    """

    def __init__(self, max_payload: int, width: int):
        self._max_payload, self._width = max_payload, width
        super().__init__({
            "request": In(stream.Signature(fetch_layout(max_payload, width))),
            "data": Out(width),
            "idle": Out(1),
            "buffer_addr": Out(range(max_payload)),
            "buffer_data": In(8),
        })

    def elaborate(self, platform):
        m = Module()
        at = Signal(range(self._max_payload + 1))
        left = Signal(range(self._width // 8 + 1))     # addresses still to put out
        reading = Signal()                             # the byte addressed last cycle arrives
        request = self.request
        m.d.comb += [self.idle.eq((left == 0) & ~reading), request.ready.eq(self.idle),
                     self.buffer_addr.eq(at)]
        m.d.sync += reading.eq(left != 0)
        with m.If(left != 0):
            m.d.sync += [at.eq(at + 1), left.eq(left - 1)]
        with m.If(reading):
            m.d.sync += self.data.eq(Cat(self.data[8:], self.buffer_data))
        with m.If(request.valid & request.ready):
            m.d.sync += left.eq(request.payload.count)
            with m.If(~request.payload.resume):
                m.d.sync += at.eq(request.payload.at)
        return m


class WriteMover(wiring.Component):
    """WRITE: the frame's words, after its address, into memory; ``done`` once stored.

    A command is taken while idle. The memory's write command goes out the next cycle;
    in the cycle the memory takes it, the first word's bytes are asked of the
    :class:`BufferReader` (idle then: nothing else reads during a WRITE). Each word goes
    to the memory once all its bytes are in (``fetched``), and the next word's bytes are
    asked for in the cycle the memory takes it: a word costs its bytes plus two cycles.
    After the last word, ``done`` passes on the memory's write acknowledgement.

    Members
    -------
    command : ``In(stream.Signature(write_command_layout(memory, max_payload)))``
    fetch : ``Out(stream.Signature(fetch_layout(max_payload, width)))``
    word : ``In(8 * word_bytes)``; fetched : ``In(1)`` (from the reader: its ``data``'s
        top bytes, and ``idle``)
    write_cmd, write_data, write_done : the memory port's write channels
    done : ``Out(stream.Signature(0))``
    """

    def __init__(self, memory: MemoryConfig, max_payload: int, width: int):
        self._memory = memory
        word_bytes = memory.bytes_per_word
        super().__init__({
            "command": In(stream.Signature(write_command_layout(memory, max_payload))),
            "fetch": Out(stream.Signature(fetch_layout(max_payload, width))),
            "word": In(8 * word_bytes),
            "fetched": In(1),
            "write_cmd": Out(stream.Signature(command_layout(memory))),
            "write_data": Out(stream.Signature(unsigned(memory.data_width))),
            "write_done": In(stream.Signature(unsigned(1))),
            "done": Out(stream.Signature(unsigned(0))),
        })

    def elaborate(self, platform):
        m = Module()
        word_bytes = self._memory.bytes_per_word
        command = Signal.like(self.command.payload)
        words_left = Signal.like(command.words)
        resume = Signal()                 # the next word's fetch, not the first
        fetch, write_cmd, write_data = self.fetch, self.write_cmd, self.write_data
        # Every field of the fetch request is driven unconditionally: a constant on part
        # of a signal whose other part is set in a branch comes out of Amaranth's Verilog
        # as an ``always @*`` that reads nothing, which Verilator never runs.
        m.d.comb += [write_cmd.payload.addr.eq(command.address),
                     write_cmd.payload.words.eq(command.words),
                     fetch.payload.at.eq(ADDRESS_BYTES), fetch.payload.count.eq(word_bytes),
                     fetch.payload.resume.eq(resume),
                     write_data.payload.eq(self.word)]
        with m.FSM():
            with m.State("idle"):
                m.d.comb += self.command.ready.eq(1)
                with m.If(self.command.valid):
                    m.d.sync += [command.eq(self.command.payload),
                                 words_left.eq(self.command.payload.words)]
                    m.next = "command"
            with m.State("command"):
                # The command and the first word's fetch are taken together.
                m.d.comb += [write_cmd.valid.eq(fetch.ready), fetch.valid.eq(write_cmd.ready)]
                with m.If(write_cmd.valid & write_cmd.ready):
                    m.next = "data"
            with m.State("data"):
                with m.If(self.fetched):
                    m.d.comb += write_data.valid.eq(1)
                    with m.If(write_data.ready):
                        m.d.sync += words_left.eq(words_left - 1)
                        with m.If(words_left == 1):
                            m.next = "stored"
                        with m.Else():
                            m.d.comb += [fetch.valid.eq(1), resume.eq(1)]
            with m.State("stored"):
                m.d.comb += [self.done.valid.eq(self.write_done.valid),
                             self.write_done.ready.eq(self.done.ready)]
                with m.If(self.done.valid & self.done.ready):
                    m.next = "idle"
        return m


class ReadMover(wiring.Component):
    """READ: its reply, header then ``count`` memory words cut into bytes, lowest first.

    A command is taken while idle. The reply header goes out the next cycle; the cycle
    after the sender takes it, the memory's read command; each word then arrives when
    the last byte of the one before has been taken, and ``done`` follows once every
    byte is out.

    Members
    -------
    command : ``In(stream.Signature(read_command_layout()))``
    tag : ``In(8)`` (the frame's, for the reply)
    reply : ``Out(stream.Signature(reply_layout()))``
    read_cmd, read_data : the memory port's read channels
    payload : ``Out(stream.Signature(8))``
    done : ``Out(stream.Signature(0))``
    """

    def __init__(self, memory: MemoryConfig, max_payload: int):
        self._memory = memory
        super().__init__({
            "command": In(stream.Signature(read_command_layout())),
            "tag": In(8),
            "reply": Out(stream.Signature(reply_layout())),
            "read_cmd": Out(stream.Signature(command_layout(memory))),
            "read_data": In(stream.Signature(read_data_layout(memory))),
            "payload": Out(stream.Signature(8)),
            "done": Out(stream.Signature(unsigned(0))),
        })

    def elaborate(self, platform):
        m = Module()
        word_bytes = self._memory.bytes_per_word
        command = Signal.like(self.command.payload)
        words_left = Signal.like(command.count)
        held = Signal(8 * word_bytes)                  # the word being cut, next byte lowest
        bytes_left = Signal(range(word_bytes + 1))
        data_in, out = self.read_data, self.payload
        m.d.comb += [self.reply.payload.type.eq(READ | REPLY), self.reply.payload.tag.eq(self.tag),
                     self.reply.payload.length.eq(command.count * word_bytes),
                     self.read_cmd.payload.addr.eq(command.address),
                     self.read_cmd.payload.words.eq(command.count),
                     out.valid.eq(bytes_left != 0), out.payload.eq(held[:8])]
        with m.If(data_in.valid & data_in.ready):
            m.d.sync += [held.eq(data_in.payload.data), bytes_left.eq(word_bytes),
                         words_left.eq(words_left - 1)]
        with m.If(out.valid & out.ready):
            m.d.sync += [held.eq(held >> 8), bytes_left.eq(bytes_left - 1)]
        with m.FSM():
            with m.State("idle"):
                m.d.comb += self.command.ready.eq(1)
                with m.If(self.command.valid):
                    m.d.sync += [command.eq(self.command.payload),
                                 words_left.eq(self.command.payload.count)]
                    m.next = "header"
            with m.State("header"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    m.next = "command"
            with m.State("command"):
                m.d.comb += self.read_cmd.valid.eq(1)
                with m.If(self.read_cmd.ready):
                    m.next = "data"
            with m.State("data"):
                m.d.comb += [data_in.ready.eq(bytes_left == 0),
                             self.done.valid.eq((words_left == 0) & (bytes_left == 0))]
                with m.If(self.done.valid & self.done.ready):
                    m.next = "idle"
        return m
