"""Rotary position embedding of one head vector at a time (docs/numerics.md section 5)."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import ModelConfig, rope_row_pairs, rope_rows
from ..fixedpoint import QueuedPipeline, delay, saturate_bits
from ..layouts import rope_row_layout, vector_beat_layout
from ..numerics import ROPE_FRAC, rope_table as numerics_rope_table
from ..stream import Handshake
from .pointwise import LIMB

__all__ = ["ROPE_FRAC", "rope_table", "RoPE"]

def rope_table(config: ModelConfig):
    """The cos and sin tables of ``config``'s positions and head size
    (:func:`tritium.hw.numerics.rope_table`, which the golden model uses too)."""
    return numerics_rope_table(config.max_context, config.head_dim, config.rope_theta)


class RoPE(wiring.Component):
    """Rotate head vectors by their position, with the model's pairing.

    Each output element is ``sat32(shift_round(x*C -+ y*S, 14))`` with ``y`` its partner
    in the pair (``half``: dims i and i + d/2; ``interleaved``: dims 2i and 2i + 1) and
    ``C, S`` the Q1.14 table entries of the head's position and the pair's frequency
    (docs/numerics.md section 5); the output keeps the input's element order.

    A head is buffered whole, because the half pairing needs element i with element
    i + d/2. The buffer has two banks (ping-pong): one head is written while the
    previous one is read out, so heads stream at one beat per cycle. The cos/sin table
    holds ``positions x head_dim/2`` entry pairs in rows of one beat's pairs
    (``rope_row_layout``), read one row per beat: a ROM of every position, or with
    ``window`` a table of that many positions that ``table`` writes at run time (the
    rows of the positions a job needs, from the table in memory; its position 0 is the
    job's first).

    Latency: the first beat of a head leaves :attr:`LATENCY` (9) cycles after its last
    beat is accepted; throughput one beat per cycle. Each pipeline stage holds at most
    one block-RAM read, multiplier or carry chain (the table's address and read data
    are registered, and so are the multipliers' inputs and outputs). Four multipliers
    (17 x 16 bits) per lane.

    Parameters
    ----------
    model_config : :class:`~tritium.hw.config.ModelConfig`
        ``head_dim``, ``max_context``, ``rope_theta`` and ``rope_pairing`` are used.
    lanes : int
        Elements per beat. ``head_dim / 2`` must be a multiple of ``lanes`` for the half
        pairing; the interleaved pairing needs ``lanes`` 1 or even, dividing ``head_dim``.
    window : int or None
        None for a ROM of all ``max_context`` positions; else the positions of a
        table written through ``table``.

    Members
    -------
    head : ``In(stream.Signature(vector_beat_layout(lanes)))``
        One head (``head_dim`` Q19.12 elements) per ``last``.
    position : ``In(stream.Signature(unsigned(position_bits)))``
        The head's position in [0, :attr:`positions`) of the table; one per head, taken
        with the head's ``last`` beat (the head's earlier beats do not wait for it).
    out : ``Out(stream.Signature(vector_beat_layout(lanes)))``
        The rotated head, same element order; ``last`` on its final beat.
    table : ``In(stream.Signature(write_layout))``, with ``window`` only
        Row ``addr`` (``position * rows + r``) of the table; always ready. Rows a head
        reads must be written before its last beat is taken.
    """

    _STAGES = 8                     # pipeline registers after a beat is issued to the buffer
    LATENCY = _STAGES + 1           # from a head's last beat in to its first beat out

    def __init__(self, model_config: ModelConfig, lanes: int, window: int = None):
        if not isinstance(model_config, ModelConfig):
            raise TypeError(f"RoPE needs a ModelConfig, not {model_config!r}")
        d, pairing = model_config.head_dim, model_config.rope_pairing
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"RoPE lanes must be a positive integer, not {lanes!r}")
        if pairing == "half" and (d // 2) % lanes:
            raise ValueError(f"RoPE with the half pairing needs head_dim / 2 ({d // 2}) to be "
                             f"a multiple of lanes ({lanes})")
        if pairing == "interleaved" and (d % lanes or (lanes > 1 and lanes % 2)):
            raise ValueError(f"RoPE with the interleaved pairing needs lanes 1 or even, "
                             f"dividing head_dim ({d}), not {lanes}")
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"RoPE window must be a positive integer, not {window!r}")
        self._config, self._lanes, self._window = model_config, lanes, window
        self._words = d // lanes                                  # beats per head
        self._freqs = rope_row_pairs(model_config, lanes)          # pairs per table row
        self._rows = rope_rows(model_config, lanes)               # table rows per position
        members = {
            "head": In(stream.Signature(vector_beat_layout(lanes))),
            "position": In(stream.Signature(unsigned(self.position_bits))),
            "out": Out(stream.Signature(vector_beat_layout(lanes))),
        }
        if window is not None:
            members["table"] = In(stream.Signature(self.write_layout))
        super().__init__(members)

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def positions(self) -> int:
        """Positions the table holds: ``window``, or the model's whole context."""
        return self._config.max_context if self._window is None else self._window

    @property
    def rows(self) -> int:
        """Table rows per position (``rope_row_layout`` each)."""
        return self._rows

    @property
    def position_bits(self) -> int:
        return max(1, (self.positions - 1).bit_length())

    @property
    def write_layout(self) -> data.StructLayout:
        """One row of a windowed table and where it goes."""
        return data.StructLayout({"addr": unsigned(max(1, (self.positions * self._rows - 1)
                                                          .bit_length())),
                                  "row": rope_row_layout(self._freqs)})

    def elaborate(self, platform):
        m = Module()
        buffer = m.submodules.buffer = Memory(
            shape=data.ArrayLayout(signed(32), self._lanes), depth=2 * self._words, init=[])
        full = Signal(2)                                          # per bank: a head waits
        base = [Signal(range(self.positions * self._rows), name=f"base{k}")
                for k in range(2)]
        self._write_side(m, buffer, full, base)
        self._read_side(m, buffer, full, base)
        return m

    def _write_side(self, m, buffer, full, base):
        """Write heads into the free bank; close the bank with the head's position."""
        bank, addr = Signal(), Signal(range(self._words))
        last = self.head.payload.last
        free = ~full.bit_select(bank, 1)
        port = buffer.write_port()
        m.d.comb += [
            self.head.ready.eq(free & (~last | self.position.valid)),
            self.position.ready.eq(self.head.valid & free & last),
            port.addr.eq(bank * self._words + addr),
            port.data.eq(self.head.payload.values),
            port.en.eq(self.head.valid & self.head.ready),
        ]
        with m.If(port.en):
            m.d.sync += addr.eq(addr + 1)
            with m.If(last):
                m.d.sync += [addr.eq(0), bank.eq(~bank), full.bit_select(bank, 1).eq(1)]
                for k in range(2):
                    with m.If(bank == k):
                        m.d.sync += base[k].eq(_times(self.position.payload, self._rows))

    def _read_side(self, m, buffer, full, base):
        """Read the full bank beat by beat with each element's partner, and rotate."""
        cfg, words, lanes = self._config, self._words, self._lanes
        bank, addr = Signal(), Signal(range(words))
        issue = Handshake("issue")
        m.d.comb += issue.valid.eq(full.bit_select(bank, 1))
        pipe = QueuedPipeline(m, issue, self.out, self._STAGES)
        with m.If(pipe.accept):
            m.d.sync += addr.eq(addr + 1)
            with m.If(addr == words - 1):
                m.d.sync += [addr.eq(0), bank.eq(~bank), full.bit_select(bank, 1).eq(0)]

        # Where the partners and the table row of beat ``addr`` are.
        half, same_word = cfg.rope_pairing == "half", cfg.rope_pairing != "half" and lanes > 1
        if half:
            first = addr < words // 2                             # every lane is a pair's first
            partner_addr = Mux(first, addr + words // 2, addr - words // 2)
            row = Mux(first, addr, addr - words // 2)
        elif same_word:
            first, partner_addr, row = None, addr, addr           # lane parity tells
        else:
            first, partner_addr, row = ~addr[0], addr ^ 1, addr >> 1
        own = buffer.read_port()
        m.d.comb += [own.addr.eq(bank * words + addr), own.en.eq(pipe.advance)]
        partner = own if same_word else buffer.read_port()
        if not same_word:
            m.d.comb += [partner.addr.eq(bank * words + partner_addr),
                         partner.en.eq(pipe.advance)]
        entries = self._table(m).read_port()

        # Each stage holds at most one block-RAM read, multiplier or carry chain:
        # 1: buffer read, table address; 2: x, y held, table read; 3: cos, sin held;
        # 4: the partial products; 5: their sums; 6: rounding; 7: the sums joined;
        # 8: the clamp, into the output register.
        table_addr = Signal.like(entries.addr)
        m.d.sync += table_addr.eq(Mux(bank, base[1], base[0]) + row)
        m.d.comb += [entries.addr.eq(table_addr), entries.en.eq(pipe.advance)]
        last = delay(m, addr == words - 1, self._STAGES - 1, pipe.advance, "last")
        m.d.sync += pipe.payload.last.eq(last)
        if first is not None:                                     # for stage 5's sums
            first = delay(m, first, 4, pipe.advance, "first")
        for lane in range(lanes):
            x = delay(m, own.data[lane], 2, pipe.advance, f"x{lane}_")
            y = delay(m, partner.data[lane ^ 1] if same_word else partner.data[lane], 2,
                      pipe.advance, f"y{lane}_")
            entry = delay(m, entries.data[lane // 2 if same_word else lane if half else 0],
                          1, pipe.advance, f"entry{lane}_")
            is_first = Const(lane % 2 == 0) if same_word else first
            value = self._rotate(m, pipe.advance, lane, x, y, entry, is_first)
            m.d.sync += pipe.payload.values[lane].eq(saturate_bits(value, 32))

    @staticmethod
    def _rotate(m, enable, lane, x, y, entry, is_first):
        """``shift_round(x*C -+ y*S, 14)`` from stage 3's registers, in stage 7's register.

        ``x`` and ``y`` are split as ``high * 2**17 + low`` so each partial product is
        one multiplier; the rounding half then meets only the low sum: the result is
        ``high_sum * 2**3 + ((low_sum + 2**13) >> 14)`` exactly.
        """
        def register(value, name):
            return delay(m, value, 1, enable, f"{name}{lane}_")

        xc_low, xc_high = (register(part * entry.cos, f"xc_{k}_")
                           for k, part in (("low", x[:LIMB]), ("high", x[LIMB:].as_signed())))
        ys_low, ys_high = (register(part * entry.sin, f"ys_{k}_")
                           for k, part in (("low", y[:LIMB]), ("high", y[LIMB:].as_signed())))
        low = register(Mux(is_first, xc_low - ys_low, xc_low + ys_low), "low")
        high = register(Mux(is_first, xc_high - ys_high, xc_high + ys_high), "high")
        rounded = register((low + (1 << (ROPE_FRAC - 1))) >> ROPE_FRAC, "rounded")
        high = register(high, "high_held")
        step = LIMB - ROPE_FRAC
        return register(Cat(rounded[:step], high + (rounded >> step)).as_signed(), "total")

    def _table(self, m):
        """The cos/sin table: a ROM, or a window ``table`` writes."""
        layout = rope_row_layout(self._freqs)
        if self._window is None:
            rows = self._rows_init()
            m.submodules.table = table = Memory(shape=layout, depth=len(rows), init=rows)
            return table
        m.submodules.table = table = Memory(shape=layout, depth=self.positions * self._rows,
                                            init=[])
        write = table.write_port()
        m.d.comb += [self.table.ready.eq(1), write.addr.eq(self.table.payload.addr),
                     write.data.eq(self.table.payload.row), write.en.eq(self.table.valid)]
        return table

    def _rows_init(self):
        """ROM row ``position * rows + r`` holds frequencies ``r*freqs .. r*freqs + freqs-1``."""
        cos, sin = rope_table(self._config)
        return [[{"cos": cos[p][r * self._freqs + e], "sin": sin[p][r * self._freqs + e]}
                 for e in range(self._freqs)]
                for p in range(self._config.max_context) for r in range(self._rows)]


def _times(value, constant: int):
    """``value * constant`` as a sum of shifted copies: adders, not a multiplier that
    synthesis might put in a DSP without registers."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    return sum(terms[1:], terms[0]) if terms else 0
