"""On-chip memory behind the memory port: block RAM holding, e.g., a whole small model."""

from amaranth import Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from .port import MemoryConfig, MemoryPortSignature, command_layout, read_data_layout

__all__ = ["OnChipMemory", "WordReader", "WordWriter", "check_memory_args"]

# Pending write acknowledgements a WordWriter can hold before it stops taking commands.
_MAX_PENDING_DONES = 7


def check_memory_args(config, depth, init):
    """Validate the arguments shared by the memories that store words on chip."""
    if not isinstance(config, MemoryConfig):
        raise TypeError(f"config must be a MemoryConfig, not {config!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    if depth > 2 ** config.addr_width:
        raise ValueError(f"depth must be at most 2**addr_width = {2 ** config.addr_width} "
                         f"words, not {depth!r}")
    init = list(init)
    if len(init) > depth:
        raise ValueError(f"init has {len(init)} words, more than depth = {depth}")
    for index, word in enumerate(init):
        if not isinstance(word, int) or not 0 <= word < 2 ** config.data_width:
            raise ValueError(f"init[{index}] must be an unsigned {config.data_width}-bit "
                             f"integer, not {word!r}")
    return init


def _decode_address(m, config, depth, addr, name):
    """Return (row, in_range): the memory row of a word address and whether it exists.

    The row is the low ``ceil_log2(depth)`` bits of the word address. With a depth that is
    not a power of two, rows ``depth .. 2**ceil_log2(depth) - 1`` do not exist.
    """
    row = Signal(ceil_log2(depth), name=f"{name}_row")
    in_range = Signal(name=f"{name}_in_range")
    m.d.comb += row.eq(addr[:len(row)])
    if depth == 2 ** len(row):
        m.d.comb += in_range.eq(1)
    else:
        m.d.comb += in_range.eq(row < depth)
    return row, in_range


class WordReader(wiring.Component):
    """Serve read commands from a synchronous memory read port, one word per cycle.

    A command is taken while the previous one issues its last word, so back-to-back
    commands stream without a gap. Commands with ``words == 0`` are dropped. Words at rows
    beyond ``depth`` (only when ``depth`` is not a power of two) read as zero.

    Latency
    -------
    The first word of a command is valid 2 cycles after the cycle the command transfers
    (when ``word_grant`` stays high). Throughput: 1 word/cycle.

    Members
    -------
    cmd : ``In(stream.Signature(command_layout(config)))``
        Read commands.
    read_data : ``Out(stream.Signature(read_data_layout(config)))``
        The words, ``last`` on the final word of each command. Back-pressure holds the
        word (the read port's ``en`` freezes its data register).
    mem : ``In(ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(data_width)))``
        The memory read port this reader drives.
    word_request : ``Out(1)``
        A word is waiting to be read and the output can take it.
    word_grant : ``In(1)``
        Read it this cycle (ties to 1 when no bandwidth limit applies). May depend on
        ``word_request`` combinationally.
    """

    def __init__(self, config: MemoryConfig, depth: int):
        self._config = config
        self._depth = depth
        super().__init__({
            "cmd":          In(stream.Signature(command_layout(config))),
            "read_data":    Out(stream.Signature(read_data_layout(config))),
            "mem":          In(ReadPort.Signature(addr_width=ceil_log2(depth),
                                                  shape=unsigned(config.data_width))),
            "word_request": Out(1),
            "word_grant":   In(1),
        })

    def elaborate(self, platform):
        m = Module()

        next_addr = Signal(self._config.addr_width)
        words_left = Signal(self._config.len_width)
        last_word = Signal()
        row_in_range = Signal()

        # The output register (read port data + `last`) advances when it is empty or drained.
        advance = Signal()
        issue = Signal()
        m.d.comb += [
            advance.eq(~self.read_data.valid | self.read_data.ready),
            self.word_request.eq((words_left != 0) & advance),
            issue.eq(self.word_request & self.word_grant),
            self.cmd.ready.eq((words_left == 0) | (issue & (words_left == 1))),
        ]

        with m.If(issue):
            m.d.sync += [next_addr.eq(next_addr + 1), words_left.eq(words_left - 1)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [next_addr.eq(self.cmd.payload.addr),
                         words_left.eq(self.cmd.payload.words)]

        row, in_range = _decode_address(m, self._config, self._depth, next_addr, "read")
        m.d.comb += [self.mem.addr.eq(row), self.mem.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [self.read_data.valid.eq(issue),
                         last_word.eq(words_left == 1),
                         row_in_range.eq(in_range)]
        m.d.comb += [
            self.read_data.payload.data.eq(Mux(row_in_range, self.mem.data, 0)),
            self.read_data.payload.last.eq(last_word),
        ]
        return m


class WordWriter(wiring.Component):
    """Serve write commands through a memory write port, one word per cycle.

    Stores each word of ``write_data`` at consecutive addresses and answers
    ``write_done`` once per command, the cycle after its last word is stored. A command
    with ``words == 0`` stores nothing and is still answered once. The next command is
    taken while the previous one stores its last word; up to 7 answers may wait for
    ``write_done.ready``. Words at rows beyond ``depth`` are dropped.

    Members
    -------
    cmd : ``In(stream.Signature(command_layout(config)))``
        Write commands.
    write_data : ``In(stream.Signature(unsigned(data_width)))``
        The words to store.
    write_done : ``Out(stream.Signature(unsigned(1)))``
        One transfer per command.
    mem : ``In(WritePort.Signature(addr_width=ceil_log2(depth), shape=unsigned(data_width)))``
        The memory write port this writer drives.
    word_request : ``Out(1)``
        A word is offered on ``write_data`` for the current command.
    word_grant : ``In(1)``
        Store it this cycle. May depend on ``word_request`` combinationally.
    """

    def __init__(self, config: MemoryConfig, depth: int):
        self._config = config
        self._depth = depth
        super().__init__({
            "cmd":          In(stream.Signature(command_layout(config))),
            "write_data":   In(stream.Signature(unsigned(config.data_width))),
            "write_done":   Out(stream.Signature(unsigned(1))),
            "mem":          In(WritePort.Signature(addr_width=ceil_log2(depth),
                                                   shape=unsigned(config.data_width))),
            "word_request": Out(1),
            "word_grant":   In(1),
        })

    def elaborate(self, platform):
        m = Module()

        next_addr = Signal(self._config.addr_width)
        words_left = Signal(self._config.len_width)
        dones_pending = Signal(range(_MAX_PENDING_DONES + 1))

        store = Signal()
        take_cmd = Signal()
        commands_finished = Signal(2)
        m.d.comb += [
            self.word_request.eq((words_left != 0) & self.write_data.valid),
            self.write_data.ready.eq((words_left != 0) & self.word_grant),
            store.eq(self.write_data.valid & self.write_data.ready),
            # Room for two more answers: a command may end and an empty one arrive together.
            self.cmd.ready.eq(((words_left == 0) | (store & (words_left == 1))) &
                              (dones_pending < _MAX_PENDING_DONES - 1)),
            take_cmd.eq(self.cmd.valid & self.cmd.ready),
            commands_finished.eq((store & (words_left == 1)) +
                                 (take_cmd & (self.cmd.payload.words == 0))),
        ]

        with m.If(store):
            m.d.sync += [next_addr.eq(next_addr + 1), words_left.eq(words_left - 1)]
        with m.If(take_cmd):
            m.d.sync += [next_addr.eq(self.cmd.payload.addr),
                         words_left.eq(self.cmd.payload.words)]

        row, in_range = _decode_address(m, self._config, self._depth, next_addr, "write")
        m.d.comb += [
            self.mem.addr.eq(row),
            self.mem.data.eq(self.write_data.payload),
            self.mem.en.eq(store & in_range),
        ]

        done_taken = self.write_done.valid & self.write_done.ready
        m.d.sync += dones_pending.eq(dones_pending + commands_finished - done_taken)
        m.d.comb += self.write_done.valid.eq(dones_pending != 0)
        return m


def attach_storage(m, port, config, depth, init, read_commands):
    """Add the storage, a WordReader and a WordWriter to ``m``, serving ``port``.

    Read commands come from ``read_commands`` (the port's own, or a delayed copy);
    everything else connects straight to the port. Returns (reader, writer), whose
    ``word_grant`` inputs the caller drives: that is where bandwidth models differ.
    """
    m.submodules.storage = storage = Memory(shape=unsigned(config.data_width), depth=depth,
                                            init=init)
    m.submodules.reader = reader = WordReader(config, depth)
    m.submodules.writer = writer = WordWriter(config, depth)
    connect(m, reader.mem, storage.read_port())
    connect(m, writer.mem, storage.write_port())
    connect(m, read_commands, reader.cmd)
    connect(m, reader.read_data, flipped(port.read_data))
    connect(m, flipped(port.write_cmd), writer.cmd)
    connect(m, flipped(port.write_data), writer.write_data)
    connect(m, writer.write_done, flipped(port.write_done))
    return reader, writer


class OnChipMemory(wiring.Component):
    """Block RAM of ``depth`` words behind the memory port.

    Reads and writes are served independently and concurrently (one read port and one
    write port on the same memory), each at one word per cycle. A read command and a
    write command arriving together both complete; a read returns the new data of a word
    only if it is issued after the ``write_done`` of the write that stored it.

    Addresses: each word address is reduced to its low ``ceil_log2(depth)`` bits, so
    addresses wrap modulo ``depth`` when ``depth`` is a power of two. For other depths
    the rows ``depth .. 2**ceil_log2(depth) - 1`` do not exist: they read as zero and
    writes to them are dropped.

    Zero-word commands: a read with ``words == 0`` returns nothing; a write with
    ``words == 0`` stores nothing and answers one ``write_done``.

    Latency
    -------
    First read word valid 2 cycles after the command's transfer cycle; 1 word/cycle
    after that, back to back across commands. ``write_done`` 1 cycle after the last
    word's transfer.

    Parameters
    ----------
    config : :class:`MemoryConfig`
        Port geometry.
    depth : int
        Words of storage, 1 .. ``2**config.addr_width``.
    init : iterable of int
        Initial contents from word 0 (e.g. a packed model); the rest is zero.

    Members
    -------
    port : ``In(MemoryPortSignature(config))``
        The memory port.
    """

    def __init__(self, config: MemoryConfig, depth: int, init=()):
        self._init = check_memory_args(config, depth, init)
        self._config = config
        self._depth = depth
        super().__init__({"port": In(MemoryPortSignature(config))})

    @property
    def config(self) -> MemoryConfig:
        """Port geometry."""
        return self._config

    @property
    def depth(self) -> int:
        """Words of storage."""
        return self._depth

    def elaborate(self, platform):
        m = Module()
        reader, writer = attach_storage(m, self.port, self._config, self._depth, self._init,
                                        flipped(self.port.read_cmd))
        # No bandwidth limit: every word goes as soon as it can.
        m.d.comb += [reader.word_grant.eq(1), writer.word_grant.eq(1)]
        return m
