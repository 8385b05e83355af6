"""Table look-up and per-row reduction: the arithmetic core of the TLMM engine.

Two ways to hold the tables, one pipeline behind them (``TLMMConfig.table_storage``):

- :class:`LookupTree` reads a table set held in registers through R x T multiplexers;
  the engine builds a whole set per cycle (:class:`~.table.TableBuilder`).
- :class:`TableRAMLookup` holds two table sets in distributed RAM (LUT-RAM) with one
  read port per row, as TeLLMe does, and writes one entry of every table per cycle.
  From registers a 10-bit look-up is ten 27:1 multiplexers, about 100 LUT6; from
  LUT-RAM it is 16 LUTs (the kv260 preset's 256 look-ups per cycle take 512 RAM64M8),
  and the sets need no flip-flops (docs/tlmm.md).
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import act_beat_layout, table_set_layout, weight_word_layout
from .table import pattern_weights

__all__ = ["LookupTree", "TableRAMLookup", "partial_sum_width", "table_index"]

# Read ports per LUT-RAM. Yosys 0.70's memory_libmap crashes (a WebAssembly exception)
# on a 64-deep memory with 12 or more asynchronous read ports for UltraScale+, and a
# LUT-RAM serves at most 7 reads besides its write port anyway, so it would replicate.
ROWS_PER_COPY = 8


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


def _reduce(m: Module, config: TLMMConfig, entry_of, codes, enable, sums):
    """The 2-stage pipeline behind the tables: register the R*T looked-up entries
    (negated where half mode says so), then the R row sums; both only on ``enable``."""
    looked_up = Signal(data.ArrayLayout(
        data.ArrayLayout(signed(config.entry_width), config.tables), config.rows))
    with m.If(enable):
        for r in range(config.rows):
            for t in range(config.tables):
                _, negate = table_index(config, codes[r][t])
                entry = entry_of(r, t)
                m.d.sync += looked_up[r][t].eq(Mux(negate, -entry, entry))
            m.d.sync += sums[r].eq(sum(looked_up[r][t] for t in range(config.tables)))


class LookupTree(wiring.Component):
    """Look up R x T codes in T tables held in registers and sum each row: 2 stages.

    Stage 1 registers the R*T looked-up entries (in half mode, negated for codes
    below the centre); stage 2 registers the R row sums. Both stages advance only
    when ``enable`` is high, so the engine can stall the whole pipeline at once.

    Members
    -------
    tables : ``In(table_set_layout(config))``
        The tables the codes index, sampled with ``codes``.
    codes : ``In(weight_word_layout(config.tile))``
    enable : ``In(1)``
    sums : ``Out(ArrayLayout(signed(partial_sum_width), R))``
        Valid two enabled cycles after its codes.
    """

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

        _reduce(m, cfg, entry_of, self.codes, self.enable, self.sums)
        return m


class TableRAMLookup(wiring.Component):
    """Build tables into LUT-RAM, look up R x T codes in them and sum each row.

    Each of the T tables is a distributed RAM of two banks (a table set each), written
    through one port and read through R asynchronous ports, one per row (in copies of
    at most :data:`ROWS_PER_COPY` read ports, written alike). An accepted
    activation beat fills the free bank, entry e of every table in cycle e, so a set
    takes ``entries`` cycles (27 in full mode, 14 in half) plus the cycle that takes
    the beat; ``loaded`` then says the set is there, and ``release`` (the last look-up
    of the set, with its codes) frees its bank for the next beat. While one set serves
    a sweep of at least ``entries + 1`` look-ups, the next is written behind it and the
    engine never waits.

    The look-up pipeline is :class:`LookupTree`'s (two stages on ``enable``).

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

        full = Signal(2)                 # which banks hold a set
        read_bank, fill_bank = Signal(), Signal()
        filled = self._fill(m, tables, full, fill_bank, index_bits)
        m.d.comb += self.loaded.eq(full.bit_select(read_bank, 1))
        with m.If(self.release):
            m.d.sync += read_bank.eq(~read_bank)
        # A bank fills only while empty and is read only while full, so a fill and a
        # release never touch the same bank.
        for bank in range(2):
            with m.If(filled & (fill_bank == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(self.release & (read_bank == bank)):
                m.d.sync += full[bank].eq(0)

        reads = [[table.read_port(domain="comb") for table in tables[r // ROWS_PER_COPY]]
                 for r in range(cfg.rows)]
        for r in range(cfg.rows):
            for t in range(cfg.tables):
                index, _ = table_index(cfg, self.codes[r][t])
                m.d.comb += reads[r][t].addr.eq(Cat(index[:index_bits], read_bank))
        _reduce(m, cfg, lambda r, t: reads[r][t].data, self.codes, self.enable, self.sums)
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
        m.d.comb += self.acts.ready.eq(~writing & ~full.bit_select(fill_bank, 1))
        with m.If(self.acts.valid & self.acts.ready):
            m.d.sync += [beat.eq(self.acts.payload), writing.eq(1), entry.eq(0)]
        with m.If(writing):
            m.d.sync += entry.eq(entry + 1)
        with m.If(finished):
            m.d.sync += [writing.eq(0), fill_bank.eq(~fill_bank)]

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
            value = Signal(signed(cfg.entry_width), name=f"entry{t}")
            m.d.comb += value.eq(sum(terms))
            for copy in tables:
                port = copy[t].write_port()
                m.d.comb += [port.addr.eq(Cat(entry[:index_bits], fill_bank)),
                             port.data.eq(value), port.en.eq(writing)]
        return finished
