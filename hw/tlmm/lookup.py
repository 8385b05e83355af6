"""Table look-up and per-row reduction: the arithmetic core of the TLMM engine."""

from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import table_set_layout, weight_word_layout

__all__ = ["LookupTree", "partial_sum_width"]


def partial_sum_width(config: TLMMConfig) -> int:
    """Signed width of one row's sum over T look-ups, up to +-128*G*T."""
    return (128 * config.group * config.tables).bit_length() + 1


class LookupTree(wiring.Component):
    """Look up R x T codes in T tables and sum each row: a 2-stage pipeline.

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
            "sums": Out(data.ArrayLayout(signed(partial_sum_width(config)), config.rows)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        looked_up = Signal(data.ArrayLayout(
            data.ArrayLayout(signed(cfg.entry_width), cfg.tables), cfg.rows))

        with m.If(self.enable):
            for r in range(cfg.rows):
                for t in range(cfg.tables):
                    m.d.sync += looked_up[r][t].eq(
                        self._lookup(self.tables[t], self.codes[r][t]))
                m.d.sync += self.sums[r].eq(sum(looked_up[r][t] for t in range(cfg.tables)))
        return m

    def _lookup(self, table, code):
        cfg = self._config
        if cfg.table_mode == "full":
            return table[code]
        centre = (3 ** cfg.group - 1) // 2
        below = code < centre
        index = Mux(below, centre - code, code - centre)[:(cfg.entries - 1).bit_length()]
        entry = table[index]
        return Mux(below, -entry, entry)
