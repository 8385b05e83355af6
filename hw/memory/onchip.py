"""On-chip memory behind the memory port: block RAM holding, e.g., a whole small model."""

from amaranth import Array, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from ..fixedpoint import QueuedPipeline, delay
from ..stream import Handshake
from .port import MemoryConfig, MemoryPortSignature, command_layout, read_data_layout

__all__ = ["OnChipMemory", "WordReader", "WordWriter", "BankedStorage", "BANK_ROWS",
           "BANKS_PER_GROUP", "read_latency", "check_memory_args"]

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
    The first word of a command is valid ``1 + read_latency`` cycles after the cycle the
    command transfers (when ``word_grant`` stays high). Throughput: 1 word/cycle.

    Members
    -------
    cmd : ``In(stream.Signature(command_layout(config)))``
        Read commands.
    read_data : ``Out(stream.Signature(read_data_layout(config)))``
        The words, ``last`` on the final word of each command. The reads move every
        cycle (the read port's ``en`` is constant); words refused wait in a queue of
        ``read_latency + 1`` words, and no word is read while it is full.
    mem : ``In(ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(data_width)))``
        The memory read port this reader drives.
    word_request : ``Out(1)``
        A word is waiting to be read and the output can take it.
    word_grant : ``In(1)``
        Read it this cycle (ties to 1 when no bandwidth limit applies). May depend on
        ``word_request`` combinationally.
    """

    def __init__(self, config: MemoryConfig, depth: int, read_latency: int = 1):
        self._config = config
        self._depth = depth
        self._read_latency = read_latency
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

        # The reads move every cycle; words the output refuses wait in the pipeline's
        # queue, and a word is read only while the queue has room for it.
        word = Handshake("word")
        pipe = QueuedPipeline(m, word, self.read_data, self._read_latency, name="read")
        issue = pipe.accept
        m.d.comb += [
            self.word_request.eq((words_left != 0) & word.ready),
            word.valid.eq((words_left != 0) & self.word_grant),
            self.cmd.ready.eq((words_left == 0) | (issue & (words_left == 1))),
        ]

        with m.If(issue):
            m.d.sync += [next_addr.eq(next_addr + 1), words_left.eq(words_left - 1)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [next_addr.eq(self.cmd.payload.addr),
                         words_left.eq(self.cmd.payload.words)]

        row, in_range = _decode_address(m, self._config, self._depth, next_addr, "read")
        m.d.comb += [self.mem.addr.eq(row), self.mem.en.eq(pipe.advance)]
        # The word's last and range bits move with its read, stage by stage.
        last, ranged = (delay(m, value, self._read_latency, pipe.advance, f"read_{name}")
                        for name, value in (("last", words_left == 1), ("in_range", in_range)))
        m.d.comb += [pipe.payload.data.eq(Mux(ranged, self.mem.data, 0)),
                     pipe.payload.last.eq(last)]
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


#: Rows per bank of a large on-chip memory: the deepest 9-bit-wide configuration of an
#: 18 Kbit block RAM (ECP5 DP16KD, Xilinx RAMB18), so a bank needs no multiplexer of its own.
BANK_ROWS = 2048
#: Banks whose outputs one register stage of a banked memory selects among (one LUT).
BANKS_PER_GROUP = 4


def read_latency(depth: int) -> int:
    """Cycles from a read address to its data for on-chip storage of ``depth`` words:
    one for a single memory, three when it is banked (:class:`BankedStorage`)."""
    return 1 if depth <= BANK_ROWS else 3


class BankedStorage(wiring.Component):
    """``depth`` words in banks of :data:`BANK_ROWS` rows, read in three cycles.

    One memory of many block RAMs leaves its synthesis to select the read word through a
    tree of multiplexers spread over the whole device, after the block RAMs' own
    clock-to-output delay: the slowest path of a large on-chip memory (docs/timing.md).
    Here the banks are separate memories, each with a register on its output (placed
    beside it: the block RAM's delay and a short route); a register after each group of
    :data:`BANKS_PER_GROUP` banks' selection cuts the tree, and the group is selected in
    the next cycle. Writes go to the bank their address selects.

    Members
    -------
    read : ``Out(ReadPort.Signature(...))``
        Data ``3`` enabled cycles after the address (every stage moves under ``en``).
    write : ``Out(WritePort.Signature(...))``
    """

    def __init__(self, shape, depth: int, init=()):
        self._shape, self._depth, self._init = shape, depth, list(init)
        super().__init__({
            "read": Out(ReadPort.Signature(addr_width=ceil_log2(depth), shape=shape)),
            "write": Out(WritePort.Signature(addr_width=ceil_log2(depth), shape=shape)),
        })

    def elaborate(self, platform):
        m = Module()
        row_bits = ceil_log2(BANK_ROWS)
        read_bank, write_bank = self.read.addr[row_bits:], self.write.addr[row_bits:]
        datas = []
        for bank, first in enumerate(range(0, self._depth, BANK_ROWS)):
            rows = min(BANK_ROWS, self._depth - first)
            memory = Memory(shape=self._shape, depth=rows,
                            init=self._init[first:first + rows])
            m.submodules[f"bank{bank}"] = memory
            reader, writer = memory.read_port(), memory.write_port()
            m.d.comb += [reader.addr.eq(self.read.addr), reader.en.eq(self.read.en),
                         writer.addr.eq(self.write.addr), writer.data.eq(self.write.data),
                         writer.en.eq(self.write.en & (write_bank == bank))]
            datas.append(delay(m, reader.data, 1, self.read.en, f"bank{bank}_data"))
        # The bank index beside the block RAMs' data and then their registers.
        bank = delay(m, read_bank, 2, self.read.en, "read_bank")
        groups = [datas[k:k + BANKS_PER_GROUP] for k in range(0, len(datas), BANKS_PER_GROUP)]
        within = ceil_log2(BANKS_PER_GROUP)
        selected = [delay(m, Array(group)[bank[:within]], 1, self.read.en, f"group{g}")
                    for g, group in enumerate(groups)]
        group = delay(m, bank[within:], 1, self.read.en, "read_group")
        m.d.comb += self.read.data.eq(Array(selected)[group])
        return m


def attach_storage(m, port, config, depth, init, read_commands, *, banked: bool = True):
    """Add the storage, a WordReader and a WordWriter to ``m``, serving ``port``.

    Read commands come from ``read_commands`` (the port's own, or a delayed copy);
    everything else connects straight to the port. More than :data:`BANK_ROWS` words are
    banked (:class:`BankedStorage`) unless ``banked`` is false (a simulation model, whose
    latency is its own). Returns (reader, writer), whose
    ``word_grant`` inputs the caller drives: that is where bandwidth models differ.
    """
    latency = read_latency(depth) if banked else 1
    m.submodules.reader = reader = WordReader(config, depth, latency)
    m.submodules.writer = writer = WordWriter(config, depth)
    if latency == 1:
        m.submodules.storage = storage = Memory(shape=unsigned(config.data_width),
                                                depth=depth, init=init)
        connect(m, reader.mem, storage.read_port())
        connect(m, writer.mem, storage.write_port())
    else:
        m.submodules.storage = storage = BankedStorage(unsigned(config.data_width), depth,
                                                       init)
        connect(m, reader.mem, storage.read)
        connect(m, writer.mem, storage.write)
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
    First read word valid ``1 + read_latency(depth)`` cycles after the command's
    transfer cycle (2; 4 for more than :data:`BANK_ROWS` words, which are banked:
    :class:`BankedStorage`); 1 word/cycle after that, back to back across commands.
    ``write_done`` 1 cycle after the last word's transfer.

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
