"""A job's rows of RoPE's table, from the table in memory into RoPE's window.

A design with ``rope_table = "memory"`` keeps RoPE's cos/sin table beside the KV cache
instead of in block RAM (at BitNet-0.7B's 2,048 positions the ROM took 85 of the
XCK26's 144 BRAM36). A job's tokens sit at consecutive positions, so before its heads
are rotated the attention block reads those positions' rows, one bus word each
(``host/compiler.py`` ``rope_table_image``), and writes them into RoPE's window of
``max_queries`` positions (docs/attention.md).
"""

from amaranth import Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..memory.port import MemoryConfig, MemoryPortSignature
from ..weights import BurstReader

__all__ = ["RopeWindowLoader", "check_row_width"]


def check_row_width(row_bits: int, memory: MemoryConfig) -> None:
    """Raise ``ValueError`` unless a table row of ``row_bits`` fits one memory word."""
    if row_bits > memory.data_width:
        raise ValueError(f"a RoPE table row of {row_bits} bits does not fit a "
                         f"{memory.data_width}-bit memory word")


class RopeWindowLoader(wiring.Component):
    """Read ``tokens * rows`` words from ``base + start * rows`` and write them to
    ``rows`` at window addresses 0, 1, ... in order.

    Parameters
    ----------
    memory : MemoryConfig
        The port the table is read through; a row is the low bits of one word.
    rows : int
        Table rows (words) per position.
    window : int
        Positions per job at most (RoPE's window).
    base : int
        Word address of the table's position 0.
    write_layout : data.StructLayout
        RoPE's ``table`` payload: ``addr`` and ``row``.
    position_shape : Shape
        Of the job's first position.

    Members
    -------
    request : ``In(stream.Signature({start, tokens}))``
        A job's first position and its tokens (1 .. ``window``).
    memory : ``Out(MemoryPortSignature(memory))``
        Reads only.
    rows : ``Out(stream.Signature(write_layout))``
    busy : ``Out(1)``
        A request is taken and not all of its rows are written.
    """

    def __init__(self, memory: MemoryConfig, rows: int, window: int, base: int,
                 write_layout: data.StructLayout, position_shape, burst: int = 256):
        check_row_width(write_layout["row"].shape.size, memory)
        self._memory, self._rows, self._window, self._base = memory, rows, window, base
        self._burst = burst
        super().__init__({
            "request": In(stream.Signature(data.StructLayout({
                "start": position_shape, "tokens": unsigned(window.bit_length())}))),
            "memory": Out(MemoryPortSignature(memory)),
            "rows": Out(stream.Signature(write_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        total = self._window * self._rows
        m.submodules.bursts = bursts = BurstReader(self._memory, self._burst,
                                                   total.bit_length())
        wiring.connect(m, bursts.commands, wiring.flipped(self.memory.read_cmd))
        remaining = Signal(range(total + 1))
        address = Signal(range(total))
        request, read = self.request.payload, self.memory.read_data
        idle = remaining == 0
        m.d.comb += [
            self.request.ready.eq(idle & bursts.request.ready),
            bursts.request.valid.eq(self.request.valid & idle),
            bursts.request.payload.base.eq(self._base + request.start * self._rows),
            bursts.request.payload.words.eq(request.tokens * self._rows),
            self.busy.eq(~idle),
            self.rows.valid.eq(read.valid & ~idle),
            self.rows.payload.addr.eq(address),
            self.rows.payload.row.eq(read.payload.data),
            read.ready.eq(self.rows.ready & ~idle),
        ]
        with m.If(self.request.valid & self.request.ready):
            m.d.sync += [remaining.eq(request.tokens * self._rows), address.eq(0)]
        with m.If(self.rows.valid & self.rows.ready):
            m.d.sync += [remaining.eq(remaining - 1), address.eq(address + 1)]
        return m
