"""Command execution: each checked frame becomes memory, register or run operations and
one reply (docs/link.md)."""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..memory.port import MemoryConfig, MemoryPortSignature
from .protocol import (ADDRESS_BYTES, ERR_ARGUMENT, ERR_COMMAND, ERROR, GET, INFO, INFO_BYTES,
                       READ, REPLY, RUN, SET, WRITE, info_bytes)
from .receiver import frame_header_layout
from .sender import reply_layout

__all__ = ["RegisterBusSignature", "CommandUnit"]

ARGUMENT_BYTES = 6                       # the longest fixed argument list (READ)


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


class CommandUnit(wiring.Component):
    """Execute one checked frame at a time and send its reply.

    A frame stays on ``frame`` (its payload in the frame buffer) until its reply has
    been handed to the sender; then the unit takes it, which frees the buffer.

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
    finished : ``In(stream.Signature(8))``
        The controller's status when the run ends; it becomes RUN's reply.
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
            "finished": In(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        word_bytes = self._memory.bytes_per_word
        width = max(8 * ARGUMENT_BYTES, 8 * word_bytes)
        frame = self.frame.payload
        # Frame-buffer bytes shift in at the top of `fetched`: after reading the first
        # ARGUMENT_BYTES they are the arguments; after reading a word's bytes, the word.
        self._fetched = fetched = Signal(width)
        self._fetch_at = Signal(range(self._max_payload + 1))
        self._fetch_left = Signal(range(width // 8 + 1))
        args = fetched[width - 8 * ARGUMENT_BYTES:]
        self._address, self._count = args[:32], args[32:48]
        self._words_left = Signal(range(self._max_payload // word_bytes + 1))
        self._payload_words = (frame.length - ADDRESS_BYTES) >> (word_bytes.bit_length() - 1)
        # The reply's type and length, and a short payload shifted out a byte at a time.
        self._reply_type, self._reply_length = Signal(8), Signal(16)
        self._short = Signal(8 * INFO_BYTES)

        reading = Signal()              # the byte addressed last cycle arrives now
        busy = (self._fetch_left != 0) | reading
        m.d.sync += reading.eq(self._fetch_left != 0)
        with m.If(self._fetch_left != 0):
            m.d.sync += [self._fetch_at.eq(self._fetch_at + 1),
                         self._fetch_left.eq(self._fetch_left - 1)]
        with m.If(reading):
            m.d.sync += fetched.eq(Cat(fetched[8:], self.buffer_data))
        m.d.comb += [self.buffer_addr.eq(self._fetch_at), self.registers.index.eq(args[:8]),
                     self.registers.write_data.eq(args[8:40]),
                     self.reply.payload.type.eq(self._reply_type),
                     self.reply.payload.tag.eq(frame.tag),
                     self.reply.payload.length.eq(self._reply_length)]

        with m.FSM():
            with m.State("idle"):
                with m.If(self.frame.valid & (frame.error != 0)):
                    self._reject(m, frame.error)
                with m.Elif(self.frame.valid):
                    self._fetch(m, 0, ARGUMENT_BYTES)
                    m.next = "dispatch"
            with m.State("dispatch"):
                with m.If(~busy):
                    self._dispatch(m)
            with m.State("write_cmd"):
                m.d.comb += [self.memory.write_cmd.valid.eq(1),
                             self.memory.write_cmd.payload.addr.eq(self._address),
                             self.memory.write_cmd.payload.words.eq(self._payload_words)]
                with m.If(self.memory.write_cmd.ready):
                    m.d.sync += self._words_left.eq(self._payload_words)
                    self._fetch(m, ADDRESS_BYTES, word_bytes)
                    m.next = "write_data"
            with m.State("write_data"):
                self._write_data(m, busy, fetched[width - 8 * word_bytes:])
            with m.State("write_done"):
                m.d.comb += self.memory.write_done.ready.eq(1)
                with m.If(self.memory.write_done.valid):
                    self._answer(m, WRITE | REPLY)
            with m.State("read_reply"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    m.next = "read_cmd"
            with m.State("read_cmd"):
                m.d.comb += [self.memory.read_cmd.valid.eq(1),
                             self.memory.read_cmd.payload.addr.eq(self._address),
                             self.memory.read_cmd.payload.words.eq(self._count)]
                with m.If(self.memory.read_cmd.ready):
                    m.next = "read_data"
            with m.State("read_data"):
                self._read_data(m)
            with m.State("run"):
                m.d.comb += [self.run.valid.eq(1), self.run.payload.eq(args[:8])]
                with m.If(self.run.ready):
                    m.next = "wait"
            with m.State("wait"):
                m.d.comb += self.finished.ready.eq(1)
                with m.If(self.finished.valid):
                    self._answer(m, RUN | REPLY, 1, self.finished.payload)
            with m.State("reply"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    m.next = "short"
            with m.State("short"):
                self._send_short(m)
            with m.State("release"):
                m.d.comb += self.frame.ready.eq(1)
                m.next = "idle"
        return m

    def _fetch(self, m, start, count):
        """Read ``count`` frame-buffer bytes from ``start`` into ``fetched``."""
        m.d.sync += [self._fetch_at.eq(start), self._fetch_left.eq(count)]

    def _answer(self, m, kind, length=0, content=0):
        """Reply with type ``kind`` and the ``length`` low bytes of ``content``."""
        m.d.sync += [self._reply_type.eq(kind), self._reply_length.eq(length),
                     self._short.eq(content)]
        m.next = "reply"

    def _reject(self, m, code):
        """Reply ERROR with ``code`` (an int or the receiver's error field)."""
        code = Const(code, 8) if isinstance(code, int) else code
        self._answer(m, ERROR, 2, Cat(code, self.frame.payload.type))

    def _in_memory(self, words):
        return ((self._address < self._memory_words) &
                (self._address + words <= self._memory_words))

    def _dispatch(self, m):
        """Check the command's arguments and start it, or reject it."""
        frame, registers = self.frame.payload, self.registers
        word_bytes = self._memory.bytes_per_word
        with m.Switch(frame.type):
            with m.Case(INFO):
                info = info_bytes(self._max_payload, self._memory.bytes_per_word,
                                  self._design, self._memory.addr_width)
                with m.If(frame.length == 0):
                    self._answer(m, INFO | REPLY, INFO_BYTES, int.from_bytes(info, "little"))
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(WRITE):
                whole = ((frame.length - ADDRESS_BYTES) & (word_bytes - 1)) == 0
                with m.If((frame.length >= ADDRESS_BYTES + word_bytes) & whole &
                          self._in_memory(self._payload_words)):
                    m.next = "write_cmd"
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(READ):
                count = self._count
                with m.If((frame.length == 6) & (count != 0) &
                          (count <= self._max_payload // word_bytes) & self._in_memory(count)):
                    m.d.sync += [self._words_left.eq(count), self._reply_type.eq(READ | REPLY),
                                 self._reply_length.eq(count * word_bytes)]
                    m.next = "read_reply"
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(SET):
                with m.If((frame.length == 5) & registers.exists & registers.writable):
                    m.d.comb += registers.write.eq(1)
                    self._answer(m, SET | REPLY)
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(GET):
                with m.If((frame.length == 1) & registers.exists):
                    self._answer(m, GET | REPLY, 4, registers.read_data)
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Case(RUN):
                with m.If(frame.length == 1):
                    m.next = "run"
                with m.Else():
                    self._reject(m, ERR_ARGUMENT)
            with m.Default():
                self._reject(m, ERR_COMMAND)

    def _write_data(self, m, busy, word):
        """Hand each fetched word to the memory, fetching the next one after it."""
        word_bytes = self._memory.bytes_per_word
        with m.If(~busy):
            m.d.comb += [self.memory.write_data.valid.eq(1),
                         self.memory.write_data.payload.eq(word)]
            with m.If(self.memory.write_data.ready):
                m.d.sync += self._words_left.eq(self._words_left - 1)
                with m.If(self._words_left == 1):
                    m.next = "write_done"
                with m.Else():
                    m.d.sync += self._fetch_left.eq(word_bytes)

    def _read_data(self, m):
        """Cut each word the memory returns into payload bytes, lowest first."""
        word_bytes = self._memory.bytes_per_word
        held = Signal(8 * word_bytes)
        bytes_left = Signal(range(word_bytes + 1))
        data = self.memory.read_data
        m.d.comb += [data.ready.eq(bytes_left == 0), self.payload.valid.eq(bytes_left != 0),
                     self.payload.payload.eq(held[:8])]
        with m.If(data.valid & data.ready):
            m.d.sync += [held.eq(data.payload.data), bytes_left.eq(word_bytes),
                         self._words_left.eq(self._words_left - 1)]
        with m.If(self.payload.valid & self.payload.ready):
            m.d.sync += [held.eq(held >> 8), bytes_left.eq(bytes_left - 1)]
        with m.If((self._words_left == 0) & (bytes_left == 0)):
            m.next = "release"

    def _send_short(self, m):
        length = self._reply_length
        m.d.comb += [self.payload.valid.eq(length != 0), self.payload.payload.eq(self._short[:8])]
        with m.If(self.payload.ready & (length != 0)):
            m.d.sync += [self._short.eq(self._short >> 8), length.eq(length - 1)]
        with m.If(length == 0):
            m.next = "release"
