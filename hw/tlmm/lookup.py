"""Table look-up and per-row reduction: the arithmetic core of the TLMM engine.

Two ways to hold the tables, one pipeline behind them (``TLMMConfig.table_storage``),
each with two table sets (banks): one serves look-ups while the next is built:

- :class:`TableRegLookup` builds a whole set per cycle into registers and reads it
  through R x T multiplexers (:class:`LookupTree` is that read on its own, for one set).
- :class:`TableRAMLookup` holds two table sets in distributed RAM (LUT-RAM) with one
  read port per row, as TeLLMe does, and writes one entry of every table per cycle.
  From registers a 10-bit look-up is ten 27:1 multiplexers, about 100 LUT6; from
  LUT-RAM it is 16 LUTs (the kv260 preset's 256 look-ups per cycle take 512 RAM64M8),
  and the sets need no flip-flops (docs/tlmm.md).
"""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import act_beat_layout, table_set_layout, weight_word_layout
from .table import load_table_set, pattern_weights

__all__ = ["LookupTree", "TableRAMLookup", "TableRegLookup", "partial_sum_width",
           "table_index", "reduce_rows", "fill_cycles", "REDUCE_LATENCY", "SUM_GROUP"]

# Read ports per LUT-RAM copy of a table. An UltraScale+ RAM64M8 serves 7 reads besides
# its write port's: a copy of 7 ports maps to one RAM64M8 a bit (8 LUTs for 7 reads),
# where Yosys 0.70 maps a copy of 8 as a simple dual-port RAM per read port (two
# RAM64M8 of 7 bits for a 10-bit entry, 16 LUTs a read): 7 rows a copy take a quarter
# fewer LUTs at 16 rows (768 against 1,024 for 4 tables, out of context). Its
# memory_libmap also crashes (a WebAssembly exception) on a 64-deep memory with 12 or
# more asynchronous read ports (docs/toolchain.md).
ROWS_PER_COPY = 7


def partial_sum_width(config: TLMMConfig) -> int:
    """Signed width of one row's sum over T look-ups, up to +-128*G*T."""
    return (128 * config.group * config.tables).bit_length() + 1


def _sums_layout(config: TLMMConfig) -> data.ArrayLayout:
    return data.ArrayLayout(signed(partial_sum_width(config)), config.rows)


def table_index(config: TLMMConfig, code):
    """Where a code's entry sits in its table, and whether to negate it (half mode)."""
    if config.table_mode == "full":
        return code, 0
    centre = (3 ** config.group - 1) // 2
    below = code < centre
    index = Mux(below, centre - code, code - centre)[:(config.entries - 1).bit_length()]
    return index, below


#: Looked-up entries one register stage of a row's sum adds (three adder levels).
SUM_GROUP = 8
#: Register stages of :func:`reduce_rows`: the entries, the sums of each group of
#: :data:`SUM_GROUP`, the row sums.
REDUCE_LATENCY = 3


def reduce_rows(m: Module, config: TLMMConfig, entry_of, negate_of, enable, sums):
    """The :data:`REDUCE_LATENCY`-stage pipeline behind the tables: register the R*T
    looked-up entries (``entry_of(r, t)``, negated where ``negate_of(r, t)``: half mode's
    lower codes), then each row's sums of :data:`SUM_GROUP` of them, then the R row sums;
    all only on ``enable``. A row of T = 32 entries summed in one stage was 12 logic
    levels for UltraScale+ (docs/timing.md); in two, each stage adds at most 8 or 4."""
    groups = -(-config.tables // SUM_GROUP)
    looked_up = Signal(data.ArrayLayout(
        data.ArrayLayout(signed(config.entry_width), config.tables), config.rows),
        reset_less=True)
    partial = Signal(data.ArrayLayout(
        data.ArrayLayout(signed(partial_sum_width(config)), groups), config.rows),
        name="group_sums", reset_less=True)
    with m.If(enable):
        for r in range(config.rows):
            for t in range(config.tables):
                entry = entry_of(r, t)
                m.d.sync += looked_up[r][t].eq(Mux(negate_of(r, t), -entry, entry))
            for g in range(groups):
                members = range(g * SUM_GROUP, min(config.tables, (g + 1) * SUM_GROUP))
                m.d.sync += partial[r][g].eq(sum(looked_up[r][t] for t in members))
            m.d.sync += sums[r].eq(sum(partial[r][g] for g in range(groups)))


def fill_cycles(config: TLMMConfig) -> int:
    """Cycles a LUT-RAM table set takes from its activation beat to ``loaded``
    (:class:`TableRAMLookup`): the beat, one entry per cycle, the write register."""
    return config.entries + 2


def _negate_of(config: TLMMConfig, codes):
    """Whether look-up (r, t) of ``codes`` is negated (half mode's lower codes)."""
    return lambda r, t: table_index(config, codes[r][t])[1]


def _banks(m: Module, filled, release):
    """Which of two table banks is read and which is filled, and which hold a set.

    ``filled`` is high in the cycle a set's last entry is written (into ``fill_bank``),
    ``release`` in the cycle of the last look-up in the set being read (``read_bank``);
    each then moves to the other bank. A bank fills only while empty and is read only
    while full, so a fill and a release never touch the same bank. Returns
    ``(full, read_bank, fill_bank)``; ``full[read_bank]`` says a set is there to read.
    """
    full = Signal(2, name="banks_full")
    read_bank, fill_bank = Signal(name="read_bank"), Signal(name="fill_bank")
    with m.If(filled):
        m.d.sync += fill_bank.eq(~fill_bank)
    with m.If(release):
        m.d.sync += read_bank.eq(~read_bank)
    for bank in range(2):
        with m.If(filled & (fill_bank == bank)):
            m.d.sync += full[bank].eq(1)
        with m.Elif(release & (read_bank == bank)):
            m.d.sync += full[bank].eq(0)
    return full, read_bank, fill_bank


class _BankedLookup(wiring.Component):
    """The members of a look-up that builds its own two table banks (see
    :class:`TableRAMLookup`)."""

    def __init__(self, config: TLMMConfig):
        self._config = config
        super().__init__({
            "acts": In(stream.Signature(act_beat_layout(config))),
            "loaded": Out(1),
            "release": In(1),
            "codes": In(weight_word_layout(config.tile)),
            "enable": In(1),
            "sums": Out(_sums_layout(config)),
        })


class LookupTree(wiring.Component):
    """Look up R x T codes in T tables held in registers and sum each row: 3 stages.

    Stage 1 registers the R*T looked-up entries (in half mode, negated for codes
    below the centre); stage 2 the sums of each group of :data:`SUM_GROUP`; stage 3 the
    R row sums. All stages advance only when ``enable`` is high, so the engine can stall
    the whole pipeline at once.

    Members
    -------
    tables : ``In(table_set_layout(config))``
        The tables the codes index, sampled with ``codes``.
    codes : ``In(weight_word_layout(config.tile))``
    enable : ``In(1)``
    sums : ``Out(ArrayLayout(signed(partial_sum_width), R))``
        Valid :attr:`LATENCY` enabled cycles after its codes.
    """

    #: Register stages from a word's codes to its row sums.
    LATENCY = REDUCE_LATENCY

    def __init__(self, config: TLMMConfig):
        self._config = config
        super().__init__({
            "tables": In(table_set_layout(config)),
            "codes": In(weight_word_layout(config.tile)),
            "enable": In(1),
            "sums": Out(_sums_layout(config)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config

        def entry_of(r, t):
            index, _ = table_index(cfg, self.codes[r][t])
            return self.tables[t][index]

        reduce_rows(m, cfg, entry_of, _negate_of(cfg, self.codes), self.enable, self.sums)
        return m


class TableRegLookup(_BankedLookup):
    """Build tables into two banks of registers, look up R x T codes in them and sum
    each row: :attr:`LATENCY` stages.

    An accepted activation beat becomes a whole table set in the free bank in one
    cycle (as :class:`~.table.TableBuilder` builds it); ``loaded`` then says a set is
    there to read, and ``release`` (the last look-up of the set, with its codes) frees
    its bank for the next beat. The bank a beat fills and the bank the look-ups read
    are registers, so neither the build's enable nor the look-up's bank select depends
    on the release in the same cycle: only the two small bank flags do. A new set can
    follow every look-up (one set per cycle, with a beat per cycle).

    A look-up is cut in two stages: the entry at the index's low :data:`GROUP_BITS` bits
    in each group of ``2**GROUP_BITS`` entries of the read bank, then the group by the
    index's high bits. Every code bit drives both banks' multiplexers, a high fan-out
    that routing makes slow; after the cut each stage is about half the depth, though
    out of context the ``ulx3s`` core was no faster for it (74.3 against 78.7 MHz, one
    seed each: docs/timing.md), since the fan-out stays. Then the row sums
    (:class:`LookupTree`'s stages after the look-up, on ``enable``).

    Members: as :class:`TableRAMLookup`'s.
    """

    #: Register stages from a word's codes to its row sums.
    LATENCY = 1 + REDUCE_LATENCY
    #: Index bits the first look-up stage resolves.
    GROUP_BITS = 3

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        banks = [Signal(table_set_layout(cfg), name=f"bank{b}", reset_less=True) for b in range(2)]
        take = Signal()
        full, read_bank, fill_bank = _banks(m, take, self.release)
        m.d.comb += [self.acts.ready.eq(~full.bit_select(fill_bank, 1)),
                     take.eq(self.acts.valid & self.acts.ready),
                     self.loaded.eq(full.bit_select(read_bank, 1))]
        for b, bank in enumerate(banks):
            with m.If(take & (fill_bank == b)):
                m.d.sync += load_table_set(bank, cfg, self.acts.payload)

        # Stage 1: each group's entry at the low index bits, from the read bank; the
        # group and the negation ride along.
        index_bits = max(1, (cfg.entries - 1).bit_length())
        low_bits = min(self.GROUP_BITS, index_bits)
        size = 1 << low_bits
        groups = -(-cfg.entries // size)
        per_lookup = lambda layout: data.ArrayLayout(data.ArrayLayout(layout, cfg.tables),
                                                     cfg.rows)
        candidates = Signal(per_lookup(data.ArrayLayout(signed(cfg.entry_width), groups)),
                            name="candidates", reset_less=True)
        group = Signal(per_lookup(unsigned(max(1, index_bits - low_bits))), name="group")
        negate = Signal(per_lookup(unsigned(1)), name="negate")
        with m.If(self.enable):
            for r in range(cfg.rows):
                for t in range(cfg.tables):
                    index, below = table_index(cfg, self.codes[r][t])
                    low = index[:low_bits]
                    for g in range(groups):
                        entries = range(g * size, min(cfg.entries, (g + 1) * size))
                        read = [Array(bank[t][e] for e in entries)[low] for bank in banks]
                        m.d.sync += candidates[r][t][g].eq(Mux(read_bank, read[1], read[0]))
                    m.d.sync += [group[r][t].eq(index[low_bits:index_bits]),
                                 negate[r][t].eq(below)]
        reduce_rows(m, cfg, lambda r, t: candidates[r][t][group[r][t]],
                lambda r, t: negate[r][t], self.enable, self.sums)
        return m


class TableRAMLookup(_BankedLookup):
    """Build tables into LUT-RAM, look up R x T codes in them and sum each row.

    Each of the T tables is a distributed RAM of two banks (a table set each), written
    through one port and read through R asynchronous ports, one per row (in copies of
    at most :data:`ROWS_PER_COPY` read ports, written alike). An accepted
    activation beat fills the free bank, entry e of every table in cycle e, so a set
    takes ``entries`` cycles (27 in full mode, 14 in half) plus the cycle that takes
    the beat and the cycle of the write register (:func:`fill_cycles`); ``loaded`` then
    says the set is there, and ``release`` (the last look-up of the set, with its codes)
    frees its bank for the next beat. While one set serves a sweep of at least
    :func:`fill_cycles` look-ups, the next is written behind it and the engine never
    waits.

    Each table's write (its entry's value, address and enable) is registered beside the
    table: the value's sum of G activations, and the entry counter it comes from, would
    otherwise run combinationally to the write port of every copy of every table, all
    over the engine (the `kv260` engine's slowest path out of context on ECP5, 29 MHz,
    31 ns of it routing; docs/timing.md).

    The look-up pipeline is :class:`LookupTree`'s (:data:`REDUCE_LATENCY` stages on
    ``enable``).

    Members
    -------
    acts : ``In(stream.Signature(act_beat_layout(config)))``
        One K-chunk of one token's activations per table set.
    loaded : ``Out(1)``
        A table set is ready to look up.
    release : ``In(1)``
        The set is done with after this cycle's look-up.
    codes : ``In(weight_word_layout(config.tile))``
    enable : ``In(1)``
    sums : ``Out(ArrayLayout(signed(partial_sum_width), R))``
    """

    #: Register stages from a word's codes to its row sums (the read is asynchronous).
    LATENCY = REDUCE_LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        index_bits = max(1, (cfg.entries - 1).bit_length())
        # Each table is held in copies of up to ROWS_PER_COPY read ports, written alike.
        copies = -(-cfg.rows // ROWS_PER_COPY)
        tables = [[Memory(shape=signed(cfg.entry_width), depth=2 << index_bits, init=[])
                   for _ in range(cfg.tables)] for _ in range(copies)]
        for c, copy in enumerate(tables):
            for t, table in enumerate(copy):
                m.submodules[f"table{t}_copy{c}"] = table

        filled = Signal()
        full, read_bank, fill_bank = _banks(m, filled, self.release)
        m.d.comb += [filled.eq(self._fill(m, tables, full, fill_bank, index_bits)),
                     self.loaded.eq(full.bit_select(read_bank, 1))]

        reads = [[table.read_port(domain="comb") for table in tables[r // ROWS_PER_COPY]]
                 for r in range(cfg.rows)]
        for r in range(cfg.rows):
            for t in range(cfg.tables):
                index, _ = table_index(cfg, self.codes[r][t])
                m.d.comb += reads[r][t].addr.eq(Cat(index[:index_bits], read_bank))
        reduce_rows(m, cfg, lambda r, t: reads[r][t].data, _negate_of(cfg, self.codes),
                self.enable, self.sums)
        return m

    def _fill(self, m, tables, full, fill_bank, index_bits):
        """Take a beat for the free bank and write one entry of every table per cycle.

        Returns the signal that is high in the cycle of a set's last write."""
        cfg = self._config
        first_code = 3 ** cfg.group - cfg.entries        # 0 in full mode, the centre in half
        beat = Signal(act_beat_layout(cfg))
        writing = Signal()
        entry = Signal(range(cfg.entries))
        finished = writing & (entry == cfg.entries - 1)
        # The set's last write lands a cycle after ``finished``; until then its bank is
        # neither free nor full.
        landing = Signal(name="fill_landing")
        m.d.sync += landing.eq(finished)
        m.d.comb += self.acts.ready.eq(~writing & ~landing & ~full.bit_select(fill_bank, 1))
        with m.If(self.acts.valid & self.acts.ready):
            m.d.sync += [beat.eq(self.acts.payload), writing.eq(1), entry.eq(0)]
        with m.If(writing):
            m.d.sync += entry.eq(entry + 1)
        with m.If(finished):
            m.d.sync += writing.eq(0)

        # The pattern of each entry as G weight selects; the sums are exact, as the
        # register builder's (``TableBuilder``) are.
        weights = data.ArrayLayout(signed(2), cfg.group)
        pattern = Signal(weights)
        with m.Switch(entry):
            for e in range(cfg.entries):
                with m.Case(e):
                    code_weights = pattern_weights(cfg.group, first_code + e)
                    m.d.comb += pattern.eq(weights.const(code_weights))
        for t in range(cfg.tables):
            group = [beat[t * cfg.group + k] for k in range(cfg.group)]
            terms = [Mux(pattern[k] == 0, 0, Mux(pattern[k] > 0, value, -value))
                     for k, value in enumerate(group)]
            value = Signal(signed(cfg.entry_width), name=f"entry{t}", reset_less=True)
            addr = Signal(index_bits + 1, name=f"entry{t}_addr", reset_less=True)
            enable = Signal(name=f"entry{t}_write")
            m.d.sync += [value.eq(sum(terms)), addr.eq(Cat(entry[:index_bits], fill_bank)),
                         enable.eq(writing)]
            for copy in tables:
                port = copy[t].write_port()
                m.d.comb += [port.addr.eq(addr), port.data.eq(value), port.en.eq(enable)]
        return landing
