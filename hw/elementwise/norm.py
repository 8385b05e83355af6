"""Fused RMSNorm and int8 activation quantization (docs/numerics.md sections 4 and 6)."""

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import ElementwiseConfig
from ..fixedpoint import (APPLY_SHIFT_LATENCY, MANTISSA_BITS, NORMALIZE_EVEN_LATENCY,
                          NORMALIZE_LATENCY, RECIPROCAL_LATENCY, RSQRT_LATENCY,
                          SCALE_MUL_LATENCY, QueuedPipeline, apply_shift, delay, normalize_even,
                          normalize_scale_staged, reciprocal, rsqrt, scale_layout,
                          scale_mul_staged, shift_control_layout, shift_controls)
from ..layouts import code_beat_layout, vector_beat_layout
from ..staged import product_latency, staged_product
from ..stream import Handshake
from ..weights import ram_attributes
from .common import gain_beat_layout

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
    rounding); a fixed pipeline then forms the reciprocal of the peak and the scale;
    pass 2 reads ``u`` back and emits ``clamp(shift_round(u * r.m, -r.e))``. The buffer
    is a ring of two maximum-length vectors (or of one and :attr:`codes_latency` beats,
    if that is more), so pass 1 of the next vector runs while pass 2 of this one drains
    it (double buffering); vectors of any length up to ``max_features`` share the ring
    without padding.

    Every register-to-register path holds at most one multiplier, block RAM read, wide
    carry chain or barrel shifter (or priority encoder): pass 1 registers the operands
    and forms the products (``hw/staged.py``: 18 x 18-bit partial products, then their
    sum a level a stage), then the magnitudes, then the comparator and adder trees over
    the lanes (:attr:`TREE_STAGES` stages), then accumulates; the once-per-vector
    pipeline is built from the staged helpers of ``hw/fixedpoint.py``; pass 2 reads,
    holds the read data, multiplies (staged), shifts, adds the rounding bit and clamps.
    Both modes have the same latencies: without ``gain`` the stages of the products it
    does not need are registers.

    Vectors may have any whole number of beats up to ``max_features / lanes``. Up to
    ``depth`` vectors may be between their first beat and the later of their last code
    and their scale leaving; the next one waits. Throughput: one beat per cycle in, and
    out, for vectors of at least 4 beats with the default depth, 8 (depth 6: 6 beats,
    depth 4: 12; the vectors in flight must cover the latency). The codes of a vector
    cannot start before its last beat is in, so the codes pause where a vector follows a
    shorter one.

    Latency: the first codes of a vector leave :attr:`codes_latency` cycles after its last
    beat is taken, its scale :attr:`scale_latency` cycles after it.

    Parameters
    ----------
    config : :class:`~tritium.hw.config.ElementwiseConfig`
        ``lanes`` elements per beat, vectors of at most ``max_features`` elements.
    gain : bool
        Fuse the RMSNorm gain (``gains`` and ``eps`` inputs; ``ts`` as the scale).
    depth : int
        Vectors in flight; also the depth of the scale queue.
    ram_role : str or None
        The role under which a platform may give the ring buffer memory attributes
        (``hw.weights.ram_attributes``; the ULX3S keeps the attention block's short
        rings in LUT RAM).

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

    #: Stages of the comparator and adder trees over a beat's lanes: a level a stage up to
    #: 8 lanes. Fixed, so that the latencies do not depend on the lanes.
    TREE_STAGES = 3

    # Stage counts, from a vector's last beat taken: pass 1 (the operands registered,
    # the products, x**2 the widest, the magnitudes, the trees, the accumulators) to its
    # totals; the once-per-vector pipeline from the totals to a factor or scale in its
    # queue; the queue (read the cycle after the write); pass 2 (read, read data held,
    # u * r.m with gain the wider, the shift, the rounding add, the clamp).
    _PRODUCT_LATENCY = 1 + product_latency(signed(32), signed(32))
    _PASS1_LATENCY = _PRODUCT_LATENCY + 1 + TREE_STAGES + 1
    _FACTOR_LATENCY = RECIPROCAL_LATENCY + SCALE_MUL_LATENCY
    _PEAK_LATENCY = NORMALIZE_LATENCY
    _TOKEN_SCALE_LATENCY = 1 + NORMALIZE_EVEN_LATENCY + RSQRT_LATENCY + SCALE_MUL_LATENCY
    # The factor and scale queues' registered outputs: what pass 2 and the scale's
    # consumer read starts at a flip-flop, not at a FIFO's read multiplexer.
    _QUEUE_LATENCY = 2
    _CODE_PRODUCT_LATENCY = product_latency(signed(48), unsigned(MANTISSA_BITS))
    _PASS2_LATENCY = 2 + _CODE_PRODUCT_LATENCY + APPLY_SHIFT_LATENCY

    #: Cycles from a vector's last beat in to its first codes out.
    codes_latency = _PASS1_LATENCY + _FACTOR_LATENCY + _QUEUE_LATENCY + _PASS2_LATENCY

    def __init__(self, config: ElementwiseConfig, gain: bool, *, depth: int = 8,
                 ram_role: str = None):
        if not isinstance(config, ElementwiseConfig):
            raise TypeError(f"NormQuant needs an ElementwiseConfig, not {config!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"NormQuant depth must be an integer of at least 2, not {depth!r}")
        self._config, self._gain, self._depth = config, bool(gain), depth
        self._ram_role = ram_role
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

    @property
    def scale_latency(self) -> int:
        """Cycles from a vector's last beat in to its scale out."""
        finish = self._TOKEN_SCALE_LATENCY if self._gain else self._PEAK_LATENCY
        return self._PASS1_LATENCY + finish + self._QUEUE_LATENCY

    @property
    def capacity(self) -> int:
        """Beats the ring buffer holds: two vectors of ``max_features``, or one and the
        beats that arrive while the first codes of a vector are formed, if that is more
        (so that vectors of the longest length follow each other without a wait)."""
        beats = self._config.max_features // self._config.lanes
        return max(2 * beats, beats + self.codes_latency)

    @property
    def sum_bits(self) -> int:
        """Width of the exact sum of squares plus eps: ``max_features * 2**62 + 2**32``."""
        return 63 + self._config.max_features.bit_length()

    def elaborate(self, platform):
        m = Module()
        lanes, depth = self._config.lanes, self._depth
        words = unsigned((self._config.max_features // lanes).bit_length())
        buffer = m.submodules.buffer = Memory(
            shape=data.ArrayLayout(self._u_shape, lanes), depth=self.capacity, init=[],
            attrs=ram_attributes(platform, self._ram_role) if self._ram_role else None)
        m.submodules.factors = factors = SyncFIFOBuffered(width=scale_layout.size + words.width,
                                                  depth=depth)
        m.submodules.scales = scales = SyncFIFOBuffered(width=scale_layout.size, depth=depth)
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

        Returns a valid bit and the totals of a vector, set for one cycle
        ``_PASS1_LATENCY`` cycles after its last beat is taken. The pipeline never stalls.
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

        # Stage A: u = x * g, and x**2, per lane: the operands registered (no path from
        # an input port into a multiplier block), then the staged multipliers.
        always, stages = Const(1), self._PRODUCT_LATENCY
        valid_a, first_a, last_a, eps_a = (
            delay(m, s, stages, always, f"{n}_a", reset_less=n != "valid")
            for s, n in ((ready, "valid"), (~in_vector, "first"), (last, "last"),
                         (self.eps.payload if gain else Const(0, EPS_BITS), "eps")))
        x = [delay(m, v, 1, always, f"x{k}_") for k, v in enumerate(x)]
        if gain:
            g = [delay(m, v, 1, always, f"g{k}_") for k, v in enumerate(self.gains.payload)]
            u_stages = stages - 1 - product_latency(x[0].shape(), g[0].shape())
            u_a = [delay(m, staged_product(m, x[k], g[k], always, f"u{k}"), u_stages, always,
                         f"u{k}_") for k in range(lanes)]
            squares = [staged_product(m, x[k], x[k], always, f"square{k}")[:63]
                       for k in range(lanes)]
        else:
            u_a = [delay(m, x[k], stages - 1, always, f"u{k}_") for k in range(lanes)]
            squares = []

        # Stage B: store u; |u| (a carry chain a lane).
        wptr = Signal(range(self.capacity))
        port = buffer.write_port()
        m.d.comb += [port.addr.eq(wptr), port.data.eq(Cat(*u_a)), port.en.eq(valid_a)]
        with m.If(valid_a):
            m.d.sync += wptr.eq(Mux(wptr == self.capacity - 1, 0, wptr + 1))
        magnitudes = [Signal(self._u_shape.width, name=f"magnitude{k}") for k in range(lanes)]
        m.d.sync += [mag.eq(abs(u)) for mag, u in zip(magnitudes, u_a)]
        squares = [delay(m, sq, 1, always, f"square{k}_") for k, sq in enumerate(squares)]

        # The trees: the beat's peak and sum of squares.
        beat_peak = _tree(m, magnitudes, lambda a, b: Mux(a > b, a, b), self.TREE_STAGES, "peak")
        beat_sum = _tree(m, squares, lambda a, b: a + b, self.TREE_STAGES, "sum") if gain else 0
        valid_t, first_t, last_t, eps_t = (
            delay(m, s, 1 + self.TREE_STAGES, always, f"{n}_t", reset_less=n != "valid")
            for s, n in ((valid_a, "valid"), (first_a, "first"), (last_a, "last"),
                         (eps_a, "eps")))

        # The accumulators; the totals of a finished vector are handed on.
        layout = data.StructLayout({"peak": unsigned(self._u_shape.width),
                                    "sum": unsigned(self.sum_bits), "eps": unsigned(EPS_BITS),
                                    "words": words})
        running, update, total = (Signal(layout, name=n) for n in ("running", "update", "total"))
        total_valid = Signal()
        m.d.comb += [
            update.peak.eq(Mux(first_t | (beat_peak > running.peak), beat_peak, running.peak)),
            update.sum.eq(Mux(first_t, 0, running.sum) + beat_sum),
            update.eps.eq(eps_t),
            update.words.eq(Mux(first_t, 1, running.words + 1)),
        ]
        with m.If(valid_t):
            m.d.sync += running.eq(update)
        m.d.sync += [total.eq(update), total_valid.eq(valid_t & last_t)]
        return total_valid, total

    def _finish(self, m, total_valid, total, factors, scales):
        """Once per vector: the quantization factor ``r``, and the output scale.

        A fixed pipeline that takes one vector per cycle and never stalls: the vector
        count keeps a free entry in both queues for every vector in it.
        """
        always = Const(1)
        valid = [total_valid]
        for k in range(1, max(self._FACTOR_LATENCY, self._TOKEN_SCALE_LATENCY) + 1):
            valid.append(Signal(name=f"finish_valid{k}"))
            m.d.sync += valid[k].eq(valid[k - 1])

        # r = scale_mul(reciprocal(peak), scale(127)).
        factor = scale_mul_staged(m, reciprocal(m, total.peak, always), SCALE_127, always,
                                  name="factor")
        count = delay(m, total.words, self._FACTOR_LATENCY, always, "finish_words")
        m.d.comb += [factors.w_en.eq(valid[self._FACTOR_LATENCY]),
                     factors.w_data.eq(Cat(factor, count))]
        peak = normalize_scale_staged(m, total.peak, 0, always, name="peak_scale")
        if not self._gain:
            m.d.comb += [scales.w_en.eq(valid[self._PEAK_LATENCY]), scales.w_data.eq(peak)]
            return

        # ts = scale_mul(scale(peak), rsqrt(normalize_even(sum + eps))).
        total_sum = Signal(self.sum_bits)
        m.d.sync += total_sum.eq(total.sum + total.eps)
        top, shift = normalize_even(m, total_sum, always)
        inverse = rsqrt(m, top, shift, always)
        wait = 1 + NORMALIZE_EVEN_LATENCY + RSQRT_LATENCY - self._PEAK_LATENCY
        token_scale = scale_mul_staged(m, delay(m, peak, wait, always, "peak_scale_held"),
                                       inverse, always, name="token_scale")
        m.d.comb += [scales.w_en.eq(valid[self._TOKEN_SCALE_LATENCY]),
                     scales.w_data.eq(token_scale)]

    def _second_pass(self, m, buffer, factors, freed, words):
        """Read ``u`` back and emit ``clamp(shift_round(u * r.m, -r.e), -128, 127)``."""
        head = data.View(data.StructLayout({"factor": scale_layout, "words": words}),
                         factors.r_data)
        issue = Handshake("issue")
        m.d.comb += issue.valid.eq(factors.r_rdy)
        pipe = QueuedPipeline(m, issue, self.codes, self._PASS2_LATENCY)
        rptr, addr = Signal(range(self.capacity)), Signal(words)
        final = addr == head.words - 1
        m.d.comb += [freed.eq(pipe.accept), factors.r_en.eq(pipe.accept & final)]
        with m.If(pipe.accept):
            m.d.sync += [rptr.eq(Mux(rptr == self.capacity - 1, 0, rptr + 1)),
                         addr.eq(Mux(final, 0, addr + 1))]
        port = buffer.read_port()
        m.d.comb += [port.addr.eq(rptr), port.en.eq(pipe.advance)]

        # Stage 1: read u. Stage 2: the read data into a register. Then u * r.m (staged)
        # while the shift -r.e (never negative: r <= 127) becomes the shifter's controls;
        # then apply_shift: the shifter, the rounding add, the clamp.
        advance = pipe.advance
        factor1, factor2 = (Signal(scale_layout, name=f"factor{k}") for k in (1, 2))
        held = Signal.like(port.data, name="u_held")
        # Without gain u is narrower and its product quicker: registers make up the rest.
        extra = self._CODE_PRODUCT_LATENCY - product_latency(self._u_shape, factor2.m.shape())
        products = [delay(m, staged_product(m, u, factor2.m, advance, f"product{k}"), extra,
                          advance, f"product{k}_") for k, u in enumerate(held)]
        shift2 = Signal(range(MAX_SHIFT + 1))
        width = len(products[0])
        control3 = Signal(shift_control_layout(width, max_left=0))
        m.d.sync += [factor1.eq(head.factor), held.eq(port.data), factor2.eq(factor1),
                     shift2.eq(Mux(factor1.e < -MAX_SHIFT, MAX_SHIFT,
                                   Mux(factor1.e < 0, -factor1.e, 0))),
                     control3.eq(shift_controls(shift2, width, max_left=0))]
        control = delay(m, control3, self._CODE_PRODUCT_LATENCY - 1, advance, "control")
        m.d.comb += [code.eq(apply_shift(m, p, control, advance, f"code{k}", bits=8))
                     for k, (code, p) in enumerate(zip(pipe.payload.codes, products))]
        m.d.comb += pipe.payload.last.eq(delay(m, final, self._PASS2_LATENCY, advance,
                                               "last"))


def _tree(m, values, combine, stages, name):
    """``values`` reduced pairwise by ``combine`` in ``stages`` registered stages (the
    levels spread evenly over them; a value without a pair passes a level unchanged)."""
    levels = (len(values) - 1).bit_length()
    per_stage = -(-levels // stages)
    for stage in range(1, stages + 1):
        for _ in range(per_stage):
            if len(values) > 1:
                values = ([combine(a, b) for a, b in zip(values[::2], values[1::2])]
                          + values[len(values) - len(values) % 2:])
        held = [Signal(Value.cast(v).shape(), name=f"{name}{stage}_{k}")
                for k, v in enumerate(values)]
        m.d.sync += [h.eq(v) for h, v in zip(held, values)]
        values = held
    return values[0]
