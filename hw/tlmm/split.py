"""The TLMM's result beats, cut to the vectors' width."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..elementwise.common import acc_beat_layout
from ..layouts import tlmm_result_layout

__all__ = ["ResultSplitter"]


class ResultSplitter(wiring.Component):
    """Each result beat of ``config.rows`` accumulators as ``rows / lanes`` beats of
    ``lanes``, in row order.

    An engine wider than the accelerator's vectors (docs/accelerator.md, "Lanes and
    rows") computes more rows a cycle than the element-wise units take; its results are
    a small part of its time (a beat per row block and token after a matrix's last
    K-chunk), so they leave a vector beat a cycle. ``last`` is the result beat's, on its
    final part. With ``lanes == rows`` the beats pass through unchanged, without logic.
    ``results.ready`` is ``parts.ready`` on a beat's final part (the engine's own
    results leave through a skid register, so its enable stays a flip-flop's).

    Members
    -------
    results : ``In(stream.Signature(tlmm_result_layout(config)))``
        The engine's result beats.
    parts : ``Out(stream.Signature(acc_beat_layout(lanes, config.acc_width)))``
        The same accumulators, ``lanes`` a beat.
    """

    def __init__(self, config: TLMMConfig, lanes: int):
        if not isinstance(lanes, int) or lanes < 1 or config.rows % lanes:
            raise ValueError(f"ResultSplitter lanes must be a positive divisor of the "
                             f"engine's {config.rows} rows, not {lanes!r}")
        self._lanes, self._count = lanes, config.rows // lanes
        super().__init__({
            "results": In(stream.Signature(tlmm_result_layout(config))),
            "parts": Out(stream.Signature(acc_beat_layout(lanes, config.acc_width))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, count = self._lanes, self._count
        results, parts = self.results, self.parts
        part = Signal(range(count))
        final = part == count - 1
        m.d.comb += [parts.valid.eq(results.valid), results.ready.eq(parts.ready & final),
                     parts.payload.last.eq(results.payload.last & final)]
        accs = results.payload.acc
        with m.Switch(part):
            for index in range(count):
                with m.Case(index):
                    m.d.comb += [parts.payload.acc[lane].eq(accs[index * lanes + lane])
                                 for lane in range(lanes)]
        if count > 1:
            with m.If(parts.valid & parts.ready):
                m.d.sync += part.eq(Mux(final, 0, part + 1))
        return m
