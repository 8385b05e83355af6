"""The weight buffer manager: packed weights from memory to the TLMM engine.

It reads one ternary matrix's packed code stream (``docs/packing.md``) from the memory
port in bursts, cuts the bus words into weight words (:class:`Gearbox`), keeps each
K-chunk's words in one bank of a ping-pong buffer and replays the chunk once per
token of the tile (:class:`ChunkBuffer`), while the next chunk loads into the other
bank. Addresses follow from the job's shape alone: the matrix occupies
``ceil(chunks * row_blocks * word_bits / data_width)`` consecutive bus words from
``base``.
"""

from math import gcd

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import TLMMConfig
from .layouts import tlmm_job_layout, weight_word_layout
from .memory.port import MemoryConfig, MemoryPortSignature

__all__ = ["WeightBufferManager", "WeightPrefetcher", "WordQueue", "JobWords", "Gearbox",
           "ChunkBuffer", "BurstReader", "weight_job_layout", "chunk_load_layout",
           "weight_source_members", "ram_attributes"]

#: Width of every performance counter of the engine and its weight buffer (they wrap).
COUNTER_WIDTH = 32


def weight_job_layout(tlmm: TLMMConfig, memory: MemoryConfig) -> data.StructLayout:
    """One matrix to stream: where it starts, then the engine job's shape."""
    return data.StructLayout({"base": unsigned(memory.addr_width),
                              **{name: field.shape for name, field in tlmm_job_layout(tlmm)}})


def chunk_load_layout(tlmm: TLMMConfig) -> data.StructLayout:
    """The shape of a matrix to load into the chunk buffer: its K-chunks and row blocks."""
    return data.StructLayout({name: field.shape for name, field in tlmm_job_layout(tlmm)
                              if name != "tokens"})


def _check_burst(memory: MemoryConfig, burst: int):
    if not 1 <= burst < 2 ** memory.len_width:
        raise ValueError(f"burst must be 1..{2 ** memory.len_width - 1}, not {burst}")


# Cycles a weight job spends in JobWords' register before it can start: its word count
# formed in three stages.
JOB_STAGES = 3


def weight_source_members(config: TLMMConfig, memory: MemoryConfig, queued: bool) -> dict:
    """Where a weight buffer manager (and the TLMM core around it) gets its bus words:
    its own read port on ``memory``, or with ``queued`` a stream of the words a
    :class:`WeightPrefetcher` read ahead and one of the matrices they are (``loads``)."""
    if queued:
        return {"queue": In(stream.Signature(memory.data_width)),
                "loads": In(stream.Signature(weight_job_layout(config, memory)))}
    return {"memory": Out(MemoryPortSignature(memory))}


def _reads_only(port) -> list:
    """The statements that keep a client's memory ``port`` from writing: the weights
    are read-only."""
    return [port.write_cmd.valid.eq(0), port.write_data.valid.eq(0),
            port.write_done.ready.eq(1)]


def _words_width(config: TLMMConfig, memory: MemoryConfig) -> int:
    """Bits of a matrix's word count: the largest matrix's bus words."""
    total = config.max_chunks * config.max_row_blocks * config.tile.word_bits
    return (-(-total // memory.data_width)).bit_length()


class JobWords(wiring.Component):
    """Hold one weight job while its bus-word count is formed, then offer both.

    The count is ``ceil(chunks * row_blocks * word_bits / data_width)``, formed over
    :data:`JOB_STAGES` stages (the product of the shape, the bits, the words rounded up:
    one multiplier or carry chain each, docs/timing.md); the register takes a job when it
    is empty, so the stages overlap the job before.

    Members
    -------
    job : ``In(stream.Signature(weight_job_layout(config, memory)))``
    out : ``Out(stream.Signature(job))``; words : ``Out(words_width)``
        The held job and its word count, valid together.
    """

    def __init__(self, config: TLMMConfig, memory: MemoryConfig):
        self._config, self._memory = config, memory
        layout = weight_job_layout(config, memory)
        super().__init__({
            "job": In(stream.Signature(layout)),
            "out": Out(stream.Signature(layout)),
            "words": Out(_words_width(config, memory)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, mem, job = self._config, self._memory, self.out.payload
        held, formed = Signal(), Signal(JOB_STAGES)
        blocks = Signal(len(job.chunks) + len(job.row_blocks), name="job_blocks")
        bits = Signal(len(blocks) + cfg.tile.word_bits.bit_length(), name="job_bits")
        m.d.comb += [self.job.ready.eq(~held), self.out.valid.eq(held & formed[-1])]
        with m.If(self.job.valid & ~held):
            m.d.sync += [job.eq(self.job.payload), held.eq(1), formed.eq(0)]
        with m.Elif(held):
            m.d.sync += [formed.eq(Cat(1, formed[:-1])),
                         held.eq(~(self.out.valid & self.out.ready)),
                         blocks.eq(job.chunks * job.row_blocks),
                         bits.eq(blocks * cfg.tile.word_bits),
                         self.words.eq((bits + mem.data_width - 1) // mem.data_width)]
        return m


class BurstReader(wiring.Component):
    """Issue read commands for ``words`` bus words from ``base``, ``burst`` at a time.

    Members
    -------
    request : ``In(stream.Signature({base, words}))``
    commands : ``Out(stream.Signature(command_layout))``
    """

    def __init__(self, memory: MemoryConfig, burst: int, words_width: int):
        _check_burst(memory, burst)
        self._burst = burst
        self._request = data.StructLayout({"base": unsigned(memory.addr_width),
                                           "words": unsigned(words_width)})
        port = MemoryPortSignature(memory)
        super().__init__({
            "request": In(stream.Signature(self._request)),
            "commands": Out(port.members["read_cmd"].signature),
        })

    def elaborate(self, platform):
        m = Module()
        address = Signal.like(self.request.payload.base)
        remaining = Signal.like(self.request.payload.words)
        length = Mux(remaining > self._burst, self._burst, remaining)
        m.d.comb += [
            self.request.ready.eq(remaining == 0),
            self.commands.valid.eq(remaining != 0),
            self.commands.payload.addr.eq(address),
            self.commands.payload.words.eq(length),
        ]
        with m.If(self.request.valid & self.request.ready):
            m.d.sync += [address.eq(self.request.payload.base),
                         remaining.eq(self.request.payload.words)]
        with m.If(self.commands.valid & self.commands.ready):
            m.d.sync += [address.eq(address + length), remaining.eq(remaining - length)]
        return m


class Gearbox(wiring.Component):
    """Re-cut a stream of ``in_width``-bit words into ``out_width``-bit words, LSB first.

    Bits flow in order: bit i of the input stream becomes bit i of the output stream.
    Up to one input and one output word per cycle. ``flush`` (a strobe) drops the bits
    still held, which the end of a matrix's zero padding leaves behind.

    When ``out_width`` is a multiple of ``in_width`` (the `kv260` engine's 2,560-bit
    words from 512-bit port words) each input word has its place in the output word, so
    the words are collected without shifters: the first ``out_width / in_width - 1`` in
    registers, the last straight into the output register with them. Otherwise a
    buffer of both widths inserts each input word at its fill level (a multiplexer of
    ``out_width / gcd + 1`` positions on every bit: 2,704 LUTs for 512 to 1,280 bits,
    yosys). Either way an output word leaves the cycle after its last input bits arrive.

    Members
    -------
    i : ``In(stream.Signature(in_width))``
    o : ``Out(stream.Signature(out_width))``
    flush : ``In(1)``
    """

    def __init__(self, in_width: int, out_width: int):
        self._in_width, self._out_width = in_width, out_width
        super().__init__({
            "i": In(stream.Signature(in_width)),
            "o": Out(stream.Signature(out_width)),
            "flush": In(1),
        })

    def elaborate(self, platform):
        if self._out_width % self._in_width == 0:
            return self._collect()
        m = Module()
        size_in, size_out = self._in_width, self._out_width
        buffer = Signal(size_in + size_out)
        level = Signal(range(size_in + size_out + 1))
        emit = Signal()
        after_emit = Signal.like(level)
        take = Signal()
        # The fill level only takes multiples of the two widths' gcd, which keeps the
        # insertion shifter small: one position per multiple.
        step = gcd(size_in, size_out)
        inserted = Signal.like(buffer)
        m.d.comb += [
            self.o.valid.eq(level >= size_out),
            self.o.payload.eq(buffer[:size_out]),
            emit.eq(self.o.valid & self.o.ready),
            after_emit.eq(Mux(emit, level - size_out, level)),
            self.i.ready.eq((after_emit <= size_out) & ~self.flush),
            take.eq(self.i.valid & self.i.ready),
        ]
        with m.Switch(after_emit):
            for position in range(0, size_out + 1, step):
                with m.Case(position):
                    m.d.comb += inserted.eq(self.i.payload << position)
        kept = Mux(emit, buffer >> size_out, buffer)
        with m.If(self.flush):
            m.d.sync += [buffer.eq(0), level.eq(0)]
        with m.Else():
            m.d.sync += [buffer.eq(kept | Mux(take, inserted, 0)),
                         level.eq(after_emit + Mux(take, size_in, 0))]
        return m

    def _collect(self):
        """Whole input words to an output word: each to its place, no shifting."""
        m = Module()
        count = self._out_width // self._in_width
        held = Signal(range(count))                  # input words of the next output word
        slots = Signal((count - 1) * self._in_width, reset_less=True)
        word, full = Signal(self._out_width, reset_less=True), Signal()
        final = held == count - 1
        take = Signal()
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(word),
                     self.i.ready.eq((~final | ~full | self.o.ready) & ~self.flush),
                     take.eq(self.i.valid & self.i.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(take):
            m.d.sync += held.eq(Mux(final, 0, held + 1))
            for index in range(count - 1):
                with m.If(held == index):
                    m.d.sync += slots.word_select(index, self._in_width).eq(self.i.payload)
            with m.If(final):
                m.d.sync += [word.eq(Cat(slots, self.i.payload)), full.eq(1)]
        with m.If(self.flush):
            m.d.sync += [held.eq(0), full.eq(0)]
        return m


def ram_attributes(platform, role: str):
    """The attributes a platform asks for on one of the design's large RAMs, by role.

    A platform lists them in ``ram_attrs`` (``{role: {name: value}}``); the KV260's puts
    the TLMM chunk buffer in UltraRAM (``ram_style = "ultra"``, read by Yosys and
    Vivado), which block RAM cannot spare. None without a platform or an entry.
    """
    return getattr(platform, "ram_attrs", {}).get(role)


class ChunkBuffer(wiring.Component):
    """Ping-pong buffer that replays each K-chunk's words once per token.

    A matrix is loaded by a ``load`` job (its ``chunks`` and ``row_blocks``) and replayed
    by a ``job`` (the same shape and the ``tokens``): ``words`` delivers its
    chunks * row_blocks words in stream order; ``replay`` emits, for each chunk, its
    row_blocks words ``tokens`` times. The chunks of all jobs go to alternating banks, a
    chunk once its bank is free, so the loader takes the next matrix's ``load`` as soon
    as it is done with the last one and loads its first chunk while the last chunk of
    the matrix before is still replayed. The first pass over a chunk may start while
    the chunk is still loading (each word is replayed as soon as it is stored), so decode
    streams through without waiting for whole chunks. The loader is never more than one
    chunk ahead of the replay's (two banks), so a bank being loaded while the replay is
    on it holds the chunk the replay wants.

    Members
    -------
    load : ``In(stream.Signature(chunk_load_layout(config)))``
    job : ``In(stream.Signature(tlmm_job_layout(config)))``
    words : ``In(stream.Signature(word layout))``
    replay : ``Out(stream.Signature(word layout))``
    stall_cycles : ``Out(32)``
        Cycles the replay could emit but its next word was not loaded yet.
    done : ``Out(1)``
        Strobe: a load job's last word was stored (the loader is free).
    """

    def __init__(self, config: TLMMConfig):
        self._config = config
        word = weight_word_layout(config.tile)
        super().__init__({
            "load": In(stream.Signature(chunk_load_layout(config))),
            "job": In(stream.Signature(tlmm_job_layout(config))),
            "words": In(stream.Signature(word)),
            "replay": Out(stream.Signature(word)),
            "stall_cycles": Out(COUNTER_WIDTH),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        depth = cfg.max_row_blocks
        m.submodules.banks = banks = Memory(
            shape=self.words.payload.shape(), depth=2 * depth, init=[],
            attrs=ram_attributes(platform, "tlmm_chunks"))
        write, read = banks.write_port(), banks.read_port()
        shape = Signal(chunk_load_layout(cfg))          # the loader's matrix
        job = Signal(tlmm_job_layout(cfg))              # the replay's
        loading, replaying = Signal(), Signal()
        m.d.comb += [self.load.ready.eq(~loading), self.job.ready.eq(~replaying)]
        with m.If(self.load.valid & self.load.ready):
            m.d.sync += [shape.eq(self.load.payload), loading.eq(1)]
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [job.eq(self.job.payload), replaying.eq(1)]

        # Loader: chunk after chunk into alternating banks, once the bank is free.
        bank_full = Signal(2)
        load_bank, load_chunk = Signal(), Signal.like(shape.chunks)
        load_index = Signal(range(depth + 1))
        store = Signal()
        m.d.comb += [
            self.words.ready.eq(loading & ~bank_full.bit_select(load_bank, 1)),
            store.eq(self.words.valid & self.words.ready),
            write.en.eq(store),
            write.addr.eq(Mux(load_bank, depth, 0) + load_index),
            write.data.eq(self.words.payload),
        ]
        chunk_loaded = store & (load_index == shape.row_blocks - 1)
        with m.If(store):
            m.d.sync += load_index.eq(load_index + 1)
        with m.If(chunk_loaded):
            m.d.sync += [load_index.eq(0), load_bank.eq(~load_bank), load_chunk.eq(load_chunk + 1)]
            with m.If(load_chunk == shape.chunks - 1):
                m.d.sync += [loading.eq(0), load_chunk.eq(0)]
                m.d.comb += self.done.eq(1)

        # Replayer: the current bank's words, token after token. The bank being loaded
        # is the replay's own chunk (the loader is at most a chunk ahead).
        play_bank, play_chunk = Signal(), Signal.like(job.chunks)
        play_index = Signal(range(depth + 1))
        play_token = Signal.like(job.tokens)
        stored = Mux(load_bank == play_bank, load_index, 0)
        available = Signal()
        advance = Signal()
        issue = Signal()
        m.d.comb += [
            available.eq(bank_full.bit_select(play_bank, 1) |
                         (loading & (load_bank == play_bank) & (play_index < stored))),
            advance.eq(~self.replay.valid | self.replay.ready),
            issue.eq(replaying & advance & available),
            read.en.eq(advance),
            read.addr.eq(Mux(play_bank, depth, 0) + play_index),
            self.replay.payload.eq(read.data),
        ]
        with m.If(advance):
            m.d.sync += self.replay.valid.eq(issue)
        with m.If(replaying & advance & ~available):
            m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
        self._replay_counters(m, job, issue, play_bank, play_chunk, play_index, play_token,
                              replaying, bank_full, chunk_loaded, load_bank)
        return m

    def _replay_counters(self, m, job, issue, play_bank, play_chunk, play_index, play_token,
                         replaying, bank_full, chunk_loaded, load_bank):
        sweep_end = play_index == job.row_blocks - 1
        chunk_end = issue & sweep_end & (play_token == job.tokens - 1)
        set_full = Mux(chunk_loaded, 1 << load_bank, 0)
        clear_full = Mux(chunk_end, 1 << play_bank, 0)
        m.d.sync += bank_full.eq((bank_full | set_full) & ~clear_full)
        with m.If(issue):
            m.d.sync += play_index.eq(Mux(sweep_end, 0, play_index + 1))
            with m.If(sweep_end):
                m.d.sync += play_token.eq(play_token + 1)
        with m.If(chunk_end):
            m.d.sync += [play_token.eq(0), play_bank.eq(~play_bank),
                         play_chunk.eq(play_chunk + 1)]
            with m.If(play_chunk == job.chunks - 1):
                m.d.sync += [replaying.eq(0), play_chunk.eq(0)]


class WeightBufferManager(wiring.Component):
    """Stream one matrix per job to the engine, reusing words across tokens.

    Its bus words come from memory (the default: it reads the job's words itself, in
    bursts) or, with ``queued``, from ``queue``: a :class:`WeightPrefetcher` read them
    ahead, in job order, and this manager takes exactly its job's words from the queue.
    Queued, it loads each matrix the prefetcher names on ``loads`` as soon as it is done
    with the last one, so the next matrix's first chunk is loaded while the last
    chunk of the one before is replayed; ``job`` then only starts the replay.

    Members
    -------
    job : ``In(stream.Signature(weight_job_layout))``
        Accepted when the previous job has been replayed (and, not ``queued``, loaded).
    memory : ``Out(MemoryPortSignature(memory))``
        Client side of the memory port (reads only); not ``queued``.
    queue : ``In(stream.Signature(memory.data_width))``
        The prefetched bus words; only ``queued``.
    loads : ``In(stream.Signature(weight_job_layout))``
        The matrices those words are, in order (:attr:`WeightPrefetcher.loads`); only
        ``queued``.
    words : ``Out(stream.Signature(weight_word_layout(config.tile)))``
        Engine order (kb, p, rb).
    fetched_words, memory_stall_cycles : ``Out(32)``
        Bus words received since reset; cycles the engine side waited for memory.
    """

    def __init__(self, config: TLMMConfig, memory: MemoryConfig, burst: int = 64,
                 queued: bool = False):
        self._config, self._memory, self._burst = config, memory, burst
        self._queued = queued
        _check_burst(memory, burst)
        super().__init__({
            "job": In(stream.Signature(weight_job_layout(config, memory))),
            **weight_source_members(config, memory, queued),
            "words": Out(stream.Signature(weight_word_layout(config.tile))),
            "fetched_words": Out(COUNTER_WIDTH),
            "memory_stall_cycles": Out(COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, mem = self._config, self._memory
        m.submodules.job_words = job_words = JobWords(cfg, mem)
        m.submodules.gearbox = gearbox = Gearbox(mem.data_width, cfg.tile.word_bits)
        m.submodules.chunks = chunks = ChunkBuffer(cfg)
        # The matrices to load: the prefetcher's, or the jobs themselves.
        loads = self.loads if self._queued else self.job
        wiring.connect(m, wiring.flipped(loads), job_words.job)
        wiring.connect(m, gearbox.o, chunks.words)
        wiring.connect(m, chunks.replay, wiring.flipped(self.words))
        source, ready = self._source(m, job_words)
        m.d.comb += [
            gearbox.i.payload.eq(source.payload),
            gearbox.i.valid.eq(source.valid),
            source.ready.eq(gearbox.i.ready),
            gearbox.flush.eq(chunks.done),
            self.memory_stall_cycles.eq(chunks.stall_cycles),
        ]
        with m.If(source.valid & source.ready):
            m.d.sync += self.fetched_words.eq(self.fetched_words + 1)
        # A matrix to load starts the source and the chunk buffer's loader together; not
        # queued, it is the job, which starts the replay with them.
        load = job_words.out
        replay = chunks.job.ready if not self._queued else 1
        start = load.valid & ready & chunks.load.ready & replay
        m.d.comb += [
            load.ready.eq(start),
            chunks.load.payload.chunks.eq(load.payload.chunks),
            chunks.load.payload.row_blocks.eq(load.payload.row_blocks),
            chunks.load.valid.eq(start),
        ]
        job = self.job if self._queued else load
        m.d.comb += [
            chunks.job.payload.chunks.eq(job.payload.chunks),
            chunks.job.payload.row_blocks.eq(job.payload.row_blocks),
            chunks.job.payload.tokens.eq(job.payload.tokens),
        ]
        if self._queued:
            m.d.comb += [chunks.job.valid.eq(self.job.valid), self.job.ready.eq(chunks.job.ready)]
        else:
            m.d.comb += chunks.job.valid.eq(start)
        return m

    def _source(self, m, job_words):
        """The bus words of the running job as a stream, and whether the source can take
        the next job; starts it when ``job_words.out`` is taken."""
        job = job_words.out
        start = job.valid & job.ready
        words = stream.Signature(self._memory.data_width).create(path=("bus_words",))
        if self._queued:
            # Exactly the job's words: the next job's are behind them in the queue.
            remaining = Signal.like(job_words.words)
            take = words.valid & words.ready
            m.d.comb += [words.valid.eq(self.queue.valid & (remaining != 0)),
                         words.payload.eq(self.queue.payload),
                         self.queue.ready.eq(words.ready & (remaining != 0))]
            with m.If(start):
                m.d.sync += remaining.eq(job_words.words)
            with m.Elif(take):
                m.d.sync += remaining.eq(remaining - 1)
            return words, remaining == 0
        m.submodules.reader = reader = BurstReader(self._memory, self._burst,
                                                   len(job_words.words))
        wiring.connect(m, reader.commands, wiring.flipped(self.memory.read_cmd))
        read = self.memory.read_data
        m.d.comb += [
            words.valid.eq(read.valid), words.payload.eq(read.payload.data),
            read.ready.eq(words.ready),
            reader.request.payload.base.eq(job.payload.base),
            reader.request.payload.words.eq(job_words.words),
            reader.request.valid.eq(start),
            *_reads_only(self.memory),
        ]
        return words, reader.request.ready


class WordQueue(wiring.Component):
    """A first-in first-out queue of ``depth`` words (a power of two) in one RAM, with
    the platform's attributes for role ``"weight_queue"`` (:func:`ram_attributes`), and
    its output in the RAM's read register: a word written is offered two cycles later.

    Members
    -------
    i : ``In(stream.Signature(width))``; o : ``Out(stream.Signature(width))``
    """

    #: Cycles from a word's transfer in to its offer out, the queue empty before.
    LATENCY = 2

    def __init__(self, width: int, depth: int):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"a word queue's depth must be a power of two >= 2, not {depth}")
        self._width, self._depth = width, depth
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.words = words = Memory(shape=unsigned(self._width), depth=depth, init=[],
                                            attrs=ram_attributes(platform, "weight_queue"))
        write, read = words.write_port(), words.read_port()
        head, tail = Signal(range(depth)), Signal(range(depth))
        stored = Signal(range(depth + 1))          # words in the RAM, not yet read out
        put = self.i.valid & self.i.ready
        advance = ~self.o.valid | self.o.ready     # the read register is free
        get = advance & (stored != 0)
        m.d.comb += [
            self.i.ready.eq(stored != depth),
            write.en.eq(put), write.addr.eq(tail), write.data.eq(self.i.payload),
            read.en.eq(advance), read.addr.eq(head),
            self.o.payload.eq(read.data),
        ]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(get)
        with m.If(put):
            m.d.sync += tail.eq(tail + 1)
        with m.If(get):
            m.d.sync += head.eq(head + 1)
        m.d.sync += stored.eq(stored + put - get)
        return m


class WeightPrefetcher(wiring.Component):
    """Read weight jobs' packed words ahead, in job order, into a queue of ``depth`` words.

    Each job (PREFETCH's: a matrix's ``base`` and shape; ``tokens`` is not used) waits in
    a queue of :attr:`JOBS`, then its word count is formed (:class:`JobWords`) and its
    words are read in bursts of ``burst``. A burst is issued only while the words already
    asked for, in flight or queued, leave room for it, so the memory never waits for the
    queue: the port's other clients (:class:`~.memory.arbiter.PortArbiter`) are never held
    back behind a full queue; and only while at most ``bursts_in_flight - 1`` others are
    in flight, enough to cover the memory's latency, so that another client's read,
    served before the prefetcher's (``PortArbiter(background=True)``), waits behind
    those few. A :class:`WeightBufferManager` with ``queued`` takes each job's words
    from ``words`` in the same order, and the jobs themselves from ``loads``.

    Members
    -------
    job : ``In(stream.Signature(weight_job_layout(config, memory)))``
    memory : ``Out(MemoryPortSignature(memory))`` (reads only)
    words : ``Out(stream.Signature(memory.data_width))``
    loads : ``Out(stream.Signature(weight_job_layout(config, memory)))``
        Every job taken, in order, for the manager to load (a queue of :attr:`LOADS`).
    """

    #: Jobs taken and not yet started: a program keeps at most two matrices ahead.
    JOBS = 2
    #: Jobs taken and not yet loading: the two ahead and, for a moment, the one whose
    #: LINEAR is about to start.
    LOADS = 3

    def __init__(self, config: TLMMConfig, memory: MemoryConfig, depth: int, burst: int = 32,
                 bursts_in_flight: int = 3):
        _check_burst(memory, burst)
        if depth < burst:
            raise ValueError(f"a weight queue of {depth} words cannot take a burst of {burst}")
        if bursts_in_flight < 1:
            raise ValueError(f"bursts_in_flight must be at least 1, not {bursts_in_flight}")
        self._config, self._memory, self._depth, self._burst = config, memory, depth, burst
        self._in_flight = bursts_in_flight * burst
        super().__init__({
            "job": In(stream.Signature(weight_job_layout(config, memory))),
            "memory": Out(MemoryPortSignature(memory)),
            "words": Out(stream.Signature(memory.data_width)),
            "loads": Out(stream.Signature(weight_job_layout(config, memory))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, mem = self._config, self._memory
        layout = weight_job_layout(cfg, mem)
        m.submodules.jobs = jobs = SyncFIFOBuffered(width=layout.size, depth=self.JOBS)
        m.submodules.loads = loads = SyncFIFOBuffered(width=layout.size, depth=self.LOADS)
        taken = self.job.valid & self.job.ready
        m.d.comb += [loads.w_data.eq(self.job.payload), loads.w_en.eq(taken),
                     self.loads.payload.eq(loads.r_data), self.loads.valid.eq(loads.r_rdy),
                     loads.r_en.eq(self.loads.ready)]
        m.submodules.job_words = job_words = JobWords(cfg, mem)
        m.submodules.reader = reader = BurstReader(mem, self._burst, len(job_words.words))
        m.submodules.queue = queue = WordQueue(mem.data_width, self._depth)
        m.d.comb += [jobs.w_data.eq(self.job.payload), jobs.w_en.eq(taken),
                     self.job.ready.eq(jobs.w_rdy & loads.w_rdy),
                     job_words.job.payload.eq(jobs.r_data), job_words.job.valid.eq(jobs.r_rdy),
                     jobs.r_en.eq(job_words.job.ready)]
        out = job_words.out
        m.d.comb += [reader.request.payload.base.eq(out.payload.base),
                     reader.request.payload.words.eq(job_words.words),
                     reader.request.valid.eq(out.valid), out.ready.eq(reader.request.ready)]
        # Words asked for and not yet out of the queue, and those not yet arrived; a burst
        # goes only if both leave room for it.
        asked = Signal(range(self._depth + 1))
        flying = Signal(range(self._in_flight + 1))
        command, port = reader.commands, self.memory
        room = ((asked + command.payload.words <= self._depth)
                & (flying + command.payload.words <= self._in_flight))
        m.d.comb += [port.read_cmd.payload.eq(command.payload),
                     port.read_cmd.valid.eq(command.valid & room),
                     command.ready.eq(port.read_cmd.ready & room)]
        issued = Mux(port.read_cmd.valid & port.read_cmd.ready, command.payload.words, 0)
        left = self.words.valid & self.words.ready
        arrived = port.read_data.valid & port.read_data.ready
        m.d.sync += [asked.eq(asked + issued - left), flying.eq(flying + issued - arrived)]
        m.d.comb += [queue.i.payload.eq(port.read_data.payload.data),
                     queue.i.valid.eq(port.read_data.valid),
                     port.read_data.ready.eq(queue.i.ready), *_reads_only(port)]
        wiring.connect(m, queue.o, wiring.flipped(self.words))
        return m
