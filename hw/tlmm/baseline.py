"""Datapaths for resource comparison: the TLMM table lookup and a plain ternary adder tree.

Both compute, per enabled cycle, R row sums of G*T int8 activations times ternary
weights (R*G*T MACs), with the same ports apart from the weights' encoding and the
same registers: the activation beat's reusable form (tables, or the activations
themselves) is loaded on ``load`` and held while N/R weight words stream past; then the
same :data:`~tritium.hw.tlmm.lookup.REDUCE_LATENCY`-stage pipeline registers the R*T
group partial sums, their sums in groups of 8, and the R row sums.
:func:`tritium.boards.report.report_block` synthesises the two side by side.
"""

from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import act_beat_layout, weight_word_layout
from .lookup import REDUCE_LATENCY, LookupTree, partial_sum_width, reduce_rows
from .table import TableBuilder

__all__ = ["TLMMDatapath", "AdderTreeDatapath", "ternary_word_layout"]


def ternary_word_layout(config: TLMMConfig) -> data.ArrayLayout:
    """R rows of G*T ternary weights, ``word[r][k]`` in {-1, 0, 1} (feature order)."""
    return data.ArrayLayout(data.ArrayLayout(signed(2), config.k_per_word), config.rows)


def _sums_layout(config: TLMMConfig) -> data.ArrayLayout:
    return data.ArrayLayout(signed(partial_sum_width(config)), config.rows)


class TLMMDatapath(wiring.Component):
    """The TLMM arithmetic alone: a :class:`TableBuilder` feeding a :class:`LookupTree`.

    ``load`` builds the T tables of ``acts`` into the builder's output register, which
    then holds them, as the engine holds the current tables for a sweep of row blocks.
    The engine adds the job sequencing, a second and third table register (double
    buffering) and the accumulator memory; this component leaves those out so the
    table-lookup arithmetic can be compared with :class:`AdderTreeDatapath`.

    Members
    -------
    acts : ``In(act_beat_layout(config))``
        Sampled when ``load`` is high.
    load : ``In(1)``
    codes : ``In(weight_word_layout(config.tile))``
    enable : ``In(1)``
    sums : ``Out(ArrayLayout(signed(partial_sum_width), R))``
        Row sums of the loaded activations times ``codes``, valid :attr:`LATENCY`
        enabled cycles after the codes (the tables loaded at least one cycle before them).
    """

    #: Enabled cycles from the codes to their row sums.
    LATENCY = LookupTree.LATENCY

    def __init__(self, config: TLMMConfig):
        if not isinstance(config, TLMMConfig):
            raise TypeError(f"Config must be a TLMMConfig, not {config!r}")
        self._config = config
        super().__init__({
            "acts": In(act_beat_layout(config)),
            "load": In(1),
            "codes": In(weight_word_layout(config.tile)),
            "enable": In(1),
            "sums": Out(_sums_layout(config)),
        })

    @property
    def config(self) -> TLMMConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        m.submodules.builder = builder = TableBuilder(self._config)
        m.submodules.lookup = lookup = LookupTree(self._config)
        # Offering and taking a beat only on load makes the builder's output register
        # the table register: it keeps its tables until the next load.
        m.d.comb += [
            builder.acts.payload.eq(self.acts),
            builder.acts.valid.eq(self.load),
            builder.tables.ready.eq(self.load),
            lookup.tables.eq(builder.tables.payload),
            lookup.codes.eq(self.codes),
            lookup.enable.eq(self.enable),
            self.sums.eq(lookup.sums),
        ]
        return m


class AdderTreeDatapath(wiring.Component):
    """The same R*G*T MACs per cycle as :class:`TLMMDatapath`, from plain adder trees.

    Each weight selects +a, 0 or -a of its activation; each row sums its G*T selected
    values. ``load`` registers the activation beat, which is then held (the adder
    tree's counterpart of the tables). The pipeline cuts where the lookup tree's does
    (the same stages): stage 1 registers the R*T sums of G products (what one table
    look-up yields), then the row sums in two stages; all advance only when ``enable``
    is high.

    Members
    -------
    acts : ``In(act_beat_layout(config))``
        Sampled when ``load`` is high.
    load : ``In(1)``
    weights : ``In(ternary_word_layout(config))``
        ``weights[r][k]`` multiplies activation k into row r. The unused code -2 reads as 0.
    enable : ``In(1)``
    sums : ``Out(ArrayLayout(signed(partial_sum_width), R))``
        Valid :attr:`LATENCY` enabled cycles after the weights (the activations loaded at
        least one cycle before them).
    """

    #: Enabled cycles from the weights to their row sums.
    LATENCY = REDUCE_LATENCY

    def __init__(self, config: TLMMConfig):
        if not isinstance(config, TLMMConfig):
            raise TypeError(f"Config must be a TLMMConfig, not {config!r}")
        self._config = config
        super().__init__({
            "acts": In(act_beat_layout(config)),
            "load": In(1),
            "weights": In(ternary_word_layout(config)),
            "enable": In(1),
            "sums": Out(_sums_layout(config)),
        })

    @property
    def config(self) -> TLMMConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        held_acts = Signal(act_beat_layout(cfg))
        with m.If(self.load):
            m.d.sync += held_acts.eq(self.acts)

        def group_sum(r, t):
            features = range(t * cfg.group, (t + 1) * cfg.group)
            return sum(_ternary_product(held_acts[k], self.weights[r][k]) for k in features)

        reduce_rows(m, cfg, group_sum, lambda r, t: 0, self.enable, self.sums)
        return m


def _ternary_product(activation, weight):
    """activation * weight for a 2-bit two's-complement weight, without a multiplier.

    Bit 0 says "non-zero" and bit 1 "negative", so -2 (0b10) reads as 0.
    """
    return Mux(weight[0], Mux(weight[1], -activation, activation), 0)
