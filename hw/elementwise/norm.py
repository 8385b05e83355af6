"""Fused RMSNorm and int8 activation quantization (docs/numerics.md sections 4 and 6)."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import ElementwiseConfig
from ..fixedpoint import (EXPONENT_BITS, Pipeline, normalize_even, normalize_scale,
                          reciprocal, rsqrt, saturate, scale_layout, scale_mul, shift_round)
from ..layouts import code_beat_layout, vector_beat_layout
from .common import Handshake, gain_beat_layout

__all__ = ["EPS_BITS", "NormQuant"]

EPS_BITS = 32                       # the integer eps term of a norm (QuantizedModel.eps)
SCALE_127 = scale_layout.const({"m": 127 << 9, "e": -9})      # fixed.scale_from_int(127)
MAX_SHIFT = 62                      # fixed.shift_round clamps right shifts here


class NormQuant(wiring.Component):
    """Quantize vectors to int8 codes and a scale, with or without a fused RMSNorm.

    ``gain=True``: ``golden.model.norm_quant`` (docs/numerics.md section 4): the codes of
    ``u = x * g`` and the token scale ``ts = scale(peak |u|) * rsqrt(sum(x**2) + eps)``.
    ``gain=False``: ``golden.model.act_codes`` (section 6, per (token, head) for Q, K
    and V): the codes of ``u = x`` and ``scale(peak |x|)``.

    Each vector is taken twice. Pass 1 stores ``u`` in a buffer while it finds the peak
    and the exact sum of squares (up to ``63 + bit_length(max_features)`` bits, no
    rounding); a short fixed pipeline then forms the reciprocal of the peak and the
    scale; pass 2 reads ``u`` back and emits ``clamp(shift_round(u * r.m, -r.e))``. The
    buffer is a ring of two maximum-length vectors, so pass 1 of the next vector runs
    while pass 2 of this one drains it (double buffering); vectors of any length up to
    ``max_features`` share the ring without padding.

    Vectors may have any whole number of beats up to ``max_features / lanes``. Up to
    ``depth`` vectors may be between their first beat and the later of their last code
    and their scale leaving; the next one waits. Throughput: one beat per cycle in, and
    out, for vectors of at least 4 beats with the default depth (depth 8: down to single
    beats). The codes of a vector cannot start before its last beat is in, so the codes
    pause where a vector follows a shorter one.

    Latency: the first codes of a vector leave :attr:`codes_latency` (9) cycles after its
    last beat is taken, its scale :attr:`scale_latency` (8 with ``gain``, 4 without)
    cycles after it.

    Parameters
    ----------
    config : :class:`~tritium.hw.config.ElementwiseConfig`
        ``lanes`` elements per beat, vectors of at most ``max_features`` elements.
    gain : bool
        Fuse the RMSNorm gain (``gains`` and ``eps`` inputs; ``ts`` as the scale).
    depth : int
        Vectors in flight; also the depth of the scale queue.

    Members
    -------
    values : ``In(stream.Signature(vector_beat_layout(lanes)))``
        Q19.12 vectors; ``last`` ends one.
    gains : ``In(stream.Signature(gain_beat_layout(lanes)))``
        Only with ``gain``. The int16 gains of each beat of ``values`` (in [-32767,
        32767]), one gain beat per value beat, taken together.
    eps : ``In(stream.Signature(unsigned(EPS_BITS)))``
        Only with ``gain``. The vector's epsilon term (``QuantizedModel.eps``), taken
        with its ``last`` beat.
    codes : ``Out(stream.Signature(code_beat_layout(lanes)))``
        The int8 codes in the input's order; ``last`` ends a vector.
    scale : ``Out(stream.Signature(scale_layout))``
        One scale per vector, in order; independent of ``codes`` (either may run ahead
        of the other by up to ``depth`` vectors).
    """

    def __init__(self, config: ElementwiseConfig, gain: bool, *, depth: int = 4):
        if not isinstance(config, ElementwiseConfig):
            raise TypeError(f"NormQuant needs an ElementwiseConfig, not {config!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"NormQuant depth must be an integer of at least 2, not {depth!r}")
        self._config, self._gain, self._depth = config, bool(gain), depth
        self._u_shape = signed(48 if self._gain else 32)          # u = x * g, or x
        lanes = config.lanes
        members = {"values": In(stream.Signature(vector_beat_layout(lanes)))}
        if self._gain:
            members["gains"] = In(stream.Signature(gain_beat_layout(lanes)))
            members["eps"] = In(stream.Signature(unsigned(EPS_BITS)))
        members["codes"] = Out(stream.Signature(code_beat_layout(lanes)))
        members["scale"] = Out(stream.Signature(scale_layout))
        super().__init__(members)

    @property
    def config(self) -> ElementwiseConfig:
        return self._config

    @property
    def gain(self) -> bool:
        return self._gain

    codes_latency = 9               # from a vector's last beat in to its first codes out

    @property
    def scale_latency(self) -> int:
        return 8 if self._gain else 4

    @property
    def capacity(self) -> int:
        """Beats the ring buffer holds: two vectors of ``max_features``."""
        return 2 * (self._config.max_features // self._config.lanes)

    @property
    def sum_bits(self) -> int:
        """Width of the exact sum of squares plus eps: ``max_features * 2**62 + 2**32``."""
        return 63 + self._config.max_features.bit_length()

    def elaborate(self, platform):
        m = Module()
        lanes, depth = self._config.lanes, self._depth
        words = unsigned((self._config.max_features // lanes).bit_length())
        buffer = m.submodules.buffer = Memory(
            shape=data.ArrayLayout(self._u_shape, lanes), depth=self.capacity, init=[])
        m.submodules.factors = factors = SyncFIFO(width=scale_layout.size + words.width,
                                                  depth=depth)
        m.submodules.scales = scales = SyncFIFO(width=scale_layout.size, depth=depth)
        m.d.comb += [self.scale.valid.eq(scales.r_rdy), self.scale.payload.eq(scales.r_data),
                     scales.r_en.eq(self.scale.ready)]

        # Beats in the ring, and vectors in flight (counted against both queues).
        taken, freed, started = Signal(), Signal(), Signal()
        reserved = Signal(range(self.capacity + 1))
        open_factors, open_scales = Signal(range(depth + 1)), Signal(range(depth + 1))
        m.d.sync += [
            reserved.eq(reserved + taken - freed),
            open_factors.eq(open_factors + started - (factors.r_en & factors.r_rdy)),
            open_scales.eq(open_scales + started - (self.scale.valid & self.scale.ready)),
        ]
        space = reserved < self.capacity
        credit = (open_factors < depth) & (open_scales < depth)

        total_valid, total = self._first_pass(m, buffer, space, credit, taken, started, words)
        self._finish(m, total_valid, total, factors, scales)
        self._second_pass(m, buffer, factors, freed, words)
        return m

    def _first_pass(self, m, buffer, space, credit, taken, started, words):
        """Take beats, store ``u``, and keep the running peak and sum of squares.

        Returns a valid bit and the totals of a vector, set for one cycle after the stage
        that holds its last beat.
        """
        lanes, gain = self._config.lanes, self._gain
        x, last = self.values.payload.values, self.values.payload.last
        in_vector = Signal()                      # the vector's first beat has been taken
        ready = self.values.valid & space & (in_vector | credit)
        if gain:
            ready = ready & self.gains.valid & (~last | self.eps.valid)
        m.d.comb += [self.values.ready.eq(ready), taken.eq(ready), started.eq(ready & ~in_vector)]
        if gain:
            m.d.comb += [self.gains.ready.eq(ready), self.eps.ready.eq(ready & last)]
        with m.If(ready):
            m.d.sync += in_vector.eq(~last)

        # Stage A: u = x * g, and x**2, per lane.
        valid_a, first_a, last_a = Signal(), Signal(), Signal()
        eps_a = Signal(EPS_BITS)
        u_a = [Signal(self._u_shape, name=f"u{k}") for k in range(lanes)]
        squares = [Signal(63, name=f"square{k}") for k in range(lanes)] if gain else []
        m.d.sync += [valid_a.eq(ready), first_a.eq(~in_vector), last_a.eq(last)]
        m.d.sync += [u.eq(x[k] * self.gains.payload[k] if gain else x[k])
                     for k, u in enumerate(u_a)]
        if gain:
            m.d.sync += [sq.eq(x[k] * x[k]) for k, sq in enumerate(squares)]
            m.d.sync += eps_a.eq(self.eps.payload)

        # Stage B: store u; accumulate; hand the totals of a finished vector on.
        wptr = Signal(range(self.capacity))
        port = buffer.write_port()
        m.d.comb += [port.addr.eq(wptr), port.data.eq(Cat(*u_a)), port.en.eq(valid_a)]
        with m.If(valid_a):
            m.d.sync += wptr.eq(Mux(wptr == self.capacity - 1, 0, wptr + 1))
        layout = data.StructLayout({"peak": unsigned(self._u_shape.width),
                                    "sum": unsigned(self.sum_bits), "eps": unsigned(EPS_BITS),
                                    "words": words})
        running, update, total = (Signal(layout, name=n) for n in ("running", "update", "total"))
        total_valid = Signal()
        beat_peak = Signal.like(running.peak, name="beat_peak")
        m.d.comb += [
            beat_peak.eq(_maximum([abs(u) for u in u_a])),
            update.peak.eq(Mux(first_a | (beat_peak > running.peak), beat_peak, running.peak)),
            update.sum.eq(Mux(first_a, 0, running.sum) + sum(squares)),
            update.eps.eq(eps_a),
            update.words.eq(Mux(first_a, 1, running.words + 1)),
        ]
        with m.If(valid_a):
            m.d.sync += running.eq(update)
        m.d.sync += [total.eq(update), total_valid.eq(valid_a & last_a)]
        return total_valid, total

    def _finish(self, m, total_valid, total, factors, scales):
        """Once per vector: the quantization factor ``r``, and the output scale.

        A fixed pipeline that takes one vector per cycle and never stalls: the vector
        count keeps a free entry in both queues for every vector in it.
        """
        valid = [total_valid] + [Signal(name=f"finish_valid{k}") for k in range(1, 6)]
        counts = [total.words] + [Signal.like(total.words, name=f"finish_words{k}")
                                  for k in range(1, 4)]
        peak = [None] + [Signal(scale_layout, name=f"peak_scale{k}") for k in range(1, 5)]
        m.d.sync += [b.eq(a) for a, b in zip(valid, valid[1:])]
        m.d.sync += [b.eq(a) for a, b in zip(counts, counts[1:])]
        m.d.sync += [b.eq(a) for a, b in zip(peak[1:], peak[2:])]
        m.d.sync += peak[1].eq(normalize_scale(total.peak, Const(0, signed(EXPONENT_BITS))))

        # r = scale_mul(reciprocal(peak), scale(127)): 2 cycles, then 1.
        factor = Signal(scale_layout)
        m.d.sync += factor.eq(scale_mul(m, reciprocal(m, total.peak, Const(1)), SCALE_127,
                                        name="factor"))
        m.d.comb += [factors.w_en.eq(valid[3]), factors.w_data.eq(Cat(factor, counts[3]))]
        if not self._gain:
            m.d.comb += [scales.w_en.eq(valid[1]), scales.w_data.eq(peak[1])]
            return

        # ts = scale_mul(scale(peak), rsqrt(normalize_even(sum + eps))): 1, 1, 2, then 1.
        total_sum, top, shift = Signal(self.sum_bits), Signal(16), Signal(signed(8))
        token_scale = Signal(scale_layout)
        even_top, even_shift = normalize_even(m, total_sum)
        m.d.sync += [total_sum.eq(total.sum + total.eps), top.eq(even_top),
                     shift.eq(even_shift)]
        m.d.sync += token_scale.eq(scale_mul(m, peak[4], rsqrt(m, top, shift, Const(1)),
                                             name="token_scale"))
        m.d.comb += [scales.w_en.eq(valid[5]), scales.w_data.eq(token_scale)]

    def _second_pass(self, m, buffer, factors, freed, words):
        """Read ``u`` back and emit ``clamp(shift_round(u * r.m, -r.e), -128, 127)``."""
        head = data.View(data.StructLayout({"factor": scale_layout, "words": words}),
                         factors.r_data)
        issue = Handshake("issue")
        m.d.comb += issue.valid.eq(factors.r_rdy)
        pipe = Pipeline(m, issue, self.codes, 3)
        rptr, addr = Signal(range(self.capacity)), Signal(words)
        final = addr == head.words - 1
        m.d.comb += [freed.eq(pipe.accept), factors.r_en.eq(pipe.accept & final)]
        with m.If(pipe.accept):
            m.d.sync += [rptr.eq(Mux(rptr == self.capacity - 1, 0, rptr + 1)),
                         addr.eq(Mux(final, 0, addr + 1))]
        port = buffer.read_port()
        m.d.comb += [port.addr.eq(rptr), port.en.eq(pipe.advance)]

        # Stage 1: read u. Stage 2: u * r.m. Stage 3: round, shift, clamp.
        factor1, last1, last2 = Signal(scale_layout), Signal(), Signal()
        shift2 = Signal(unsigned(EXPONENT_BITS + 1))
        products = [Signal(signed(self._u_shape.width + 17), name=f"product{k}")
                    for k in range(self._config.lanes)]
        with m.If(pipe.advance):
            m.d.sync += [factor1.eq(head.factor), last1.eq(final), last2.eq(last1),
                         shift2.eq(Mux(factor1.e < 0, -factor1.e, 0)),
                         self.codes.payload.last.eq(last2)]
            m.d.sync += [p.eq(u * factor1.m) for p, u in zip(products, port.data)]
            m.d.sync += [code.eq(saturate(shift_round(p, shift2, MAX_SHIFT), -128, 127))
                         for code, p in zip(self.codes.payload.codes, products)]


def _maximum(values):
    """The largest of unsigned ``values``: a comparator tree."""
    while len(values) > 1:
        pairs = [Mux(a > b, a, b) for a, b in zip(values[::2], values[1::2])]
        values = pairs + values[len(values) - len(values) % 2:]
    return values[0]
