"""Online lookup-table construction from int8 activations."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import act_beat_layout, table_set_layout

__all__ = ["TableBuilder", "load_table_set", "pattern_weights"]


def pattern_weights(group: int, code: int) -> list:
    """Ternary weights (w_0 .. w_{G-1}) of a code: digit k of the code, minus one."""
    return [(code // 3 ** k) % 3 - 1 for k in range(group)]


class TableBuilder(wiring.Component):
    """Build the T lookup tables of one K-chunk from one activation beat.

    A registered stream stage: each accepted beat of G*T int8 activations becomes one
    table set, entry e of table t holding ``sum_k w_k(code) * a[t*G + k]``. One beat
    per cycle; output valid one cycle after the input transfer.

    Members
    -------
    acts : ``In(stream.Signature(act_beat_layout(config)))``
    tables : ``Out(stream.Signature(table_set_layout(config)))``
    """

    def __init__(self, config: TLMMConfig):
        self._config = config
        super().__init__({
            "acts": In(stream.Signature(act_beat_layout(config))),
            "tables": Out(stream.Signature(table_set_layout(config))),
        })

    @property
    def config(self) -> TLMMConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        with m.If(self.acts.valid & (~self.tables.valid | self.tables.ready)):
            m.d.comb += self.acts.ready.eq(1)
            m.d.sync += [self.tables.valid.eq(1),
                         *load_table_set(self.tables.payload, self._config, self.acts.payload)]
        with m.Elif(self.tables.ready):
            m.d.sync += self.tables.valid.eq(0)
        return m


def load_table_set(target, config: TLMMConfig, beat) -> list:
    """Assignments of the table set of one activation ``beat`` to ``target`` (a value of
    ``table_set_layout(config)``): entry e of table t is ``sum_k w_k(code) *
    beat[t*G + k]``, without multipliers."""
    first_code = 3 ** config.group - config.entries  # 0 in full mode, the centre in half
    statements = []
    for t in range(config.tables):
        group = [beat[t * config.group + k] for k in range(config.group)]
        for e in range(config.entries):
            weights = pattern_weights(config.group, first_code + e)
            statements.append(target[t][e].eq(_signed_sum(group, weights)))
    return statements


def _signed_sum(values, weights):
    """sum(w * v) for weights in {-1, 0, 1}, without multipliers."""
    total = 0
    for value, weight in zip(values, weights):
        if weight == 1:
            total = total + value
        elif weight == -1:
            total = total - value
    return total
