"""Element-by-element joins of two vector streams: the residual add and the FFN gating."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ACTIVATIONS
from ..fixedpoint import SIGMOID_LATENCY, Pipeline, QueuedPipeline, delay, saturate_bits, sigmoid
from ..layouts import vector_beat_layout
from ..weights import ram_attributes
from .common import join

__all__ = ["ResidualAdd", "Gating", "PRODUCT_LATENCY", "rounded_product"]

F_ACT = 12                          # fractional bits of Q19.12
F_SIGMOID = 15                      # the sigmoid table is Q1.15
LIMB = 17                           # an unsigned 17-bit limb is a signed 18-bit DSP operand

PRODUCT_LATENCY = 4                 # stages of :func:`rounded_product`


def _limbs(value):
    """(low 17 bits unsigned, the rest with ``value``'s signedness): ``high * 2**17 + low``."""
    low = value[:LIMB]
    if len(value) <= LIMB:
        return (value.as_signed() if value.shape().signed else low), None
    high = value[LIMB:]
    if len(high) > LIMB + (1 if value.shape().signed else 0):
        raise ValueError(f"rounded_product takes operands of at most 35 bits, not {len(value)}")
    return low, high.as_signed() if value.shape().signed else high


def rounded_product(m: Module, a, b, shift: int, enable, name: str):
    """``shift_round(a * b, shift)`` for ``1 <= shift <= 17``, registered
    :data:`PRODUCT_LATENCY` enabled cycles later. ``a is b`` squares.

    Each operand is split into a 17-bit unsigned low limb and its high part, so each
    partial product is one DSP multiplier with a register behind it (stage 1); then one
    carry chain per stage sums them. With ``a * b = top * 2**17 + ll`` and ``top = hh *
    2**17 + lh + hl``, the rounding half meets only ``ll``: the result is ``top *
    2**(17-shift) + ((ll + 2**(shift-1)) >> shift)`` exactly. Stage 2 rounds ``ll`` and
    adds the middle products, stage 3 adds ``hh`` into ``top``, stage 4 adds the two.
    """
    assert 1 <= shift <= LIMB
    (a_low, a_high), (b_low, b_high) = _limbs(a), _limbs(b)
    square = a is b

    def product(x, y, part):
        return None if x is None or y is None else delay(m, x * y, 1, enable, f"{name}_{part}")

    ll, lh, hh = product(a_low, b_low, "ll"), product(a_low, b_high, "lh"), \
        product(a_high, b_high, "hh")
    hl = None if square else product(a_high, b_low, "hl")
    # Stage 2: the low product rounded beside the sum of the middle ones.
    low = delay(m, (ll + (1 << (shift - 1))) >> shift, 1, enable, f"{name}_low")
    middle = [p for p in (lh, hl) if p is not None]
    if square and lh is not None:
        middle = [lh << 1]
    elif len(middle) == 2:
        middle = [middle[0] + middle[1]]
    middle = [delay(m, value, 1, enable, f"{name}_middle") for value in middle]
    hh = delay(m, hh, 1, enable, f"{name}_hh2") if hh is not None else None
    # Stage 3: top = hh * 2**17 + middle; middle's low 17 bits pass through.
    top = middle[0] if middle else None
    if hh is not None:
        top = _cat(top[:LIMB], hh + (top >> LIMB))
    top = delay(m, top, 1, enable, f"{name}_top") if top is not None else None
    low = delay(m, low, 1, enable, f"{name}_low3")
    # Stage 4: top * 2**(17 - shift) + low; low's bits under top's LSB pass through.
    step = LIMB - shift
    result = low if top is None else _cat(low[:step], top + (low >> step))
    return delay(m, result, 1, enable, f"{name}_result")


def _cat(low, high):
    """``high * 2**len(low) + low`` with ``high``'s signedness."""
    value = Cat(low, high)
    return value.as_signed() if high.shape().signed else value


class ResidualAdd(wiring.Component):
    """Add an update to the residual stream: ``x = sat32(x + y)`` (docs/numerics.md section 7).

    The two vectors are joined beat by beat; ``last`` is taken from ``residual``.

    Latency :attr:`LATENCY` (1) cycle: the adder's carry chain and the clamp that its
    top bits decide (:func:`~tritium.hw.fixedpoint.saturate_bits`); one beat per cycle.

    Members
    -------
    residual : ``In(stream.Signature(vector_beat_layout(lanes)))``
    update : ``In(stream.Signature(vector_beat_layout(lanes)))``
    out : ``Out(stream.Signature(vector_beat_layout(lanes)))``
    """

    LATENCY = 1

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"ResidualAdd lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        super().__init__({
            "residual": In(stream.Signature(vector_beat_layout(lanes))),
            "update": In(stream.Signature(vector_beat_layout(lanes))),
            "out": Out(stream.Signature(vector_beat_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        beat = join(m, "beat", self.residual, self.update)
        pipe = Pipeline(m, beat, self.out, self.LATENCY)
        pairs = zip(self.out.payload.values, self.residual.payload.values,
                    self.update.payload.values)
        with m.If(pipe.advance):
            m.d.sync += [out.eq(saturate_bits(a + b, 32)) for out, a, b in pairs]
            m.d.sync += self.out.payload.last.eq(self.residual.payload.last)
        return m


class Gating(wiring.Component):
    """The FFN gating ``act(gate) * up``, exactly as ``golden.model.ffn_activation``.

    ``"silu"``: ``act = shift_round(gate * sigmoid(gate), 15)`` with the 513-entry
    interpolated sigmoid table (one ROM read port per lane); ``"relu2"``:
    ``act = sat32(shift_round(max(gate, 0)**2, 12))``. Then
    ``h = sat32(shift_round(act * up, 12))`` (docs/numerics.md section 7). The two
    vectors are joined beat by beat; ``last`` is taken from ``gate``.

    Latency :attr:`latency` cycles; one beat per cycle. The stages move every cycle
    and a queue holds the results while ``out`` refuses (:class:`QueuedPipeline`), so no
    enable fans out over the pipeline. Each stage holds at most one
    block-RAM read, multiplier or carry chain: SiLU takes the sigmoid's
    ``SIGMOID_LATENCY``, then two rounded products (:func:`rounded_product`, each
    ``PRODUCT_LATENCY``) and the clamp; ReLU^2 registers ``max(gate, 0)``, then the
    square, its clamp, the product and its clamp. Per lane, the products are split into
    17 x 17-bit partial products: 2 + 4 multipliers for SiLU, 3 + 4 for ReLU^2.

    Members
    -------
    gate : ``In(stream.Signature(vector_beat_layout(lanes)))``
    up : ``In(stream.Signature(vector_beat_layout(lanes)))``
    out : ``Out(stream.Signature(vector_beat_layout(lanes)))``
    """

    def __init__(self, lanes: int, activation: str):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Gating lanes must be a positive integer, not {lanes!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Gating activation must be one of {ACTIVATIONS}, "
                             f"not {activation!r}")
        self._lanes, self._activation = lanes, activation
        super().__init__({
            "gate": In(stream.Signature(vector_beat_layout(lanes))),
            "up": In(stream.Signature(vector_beat_layout(lanes))),
            "out": Out(stream.Signature(vector_beat_layout(lanes))),
        })

    @property
    def activation_latency(self) -> int:
        """Stages from a beat's transfer to its registered ``act``."""
        if self._activation == "silu":
            return SIGMOID_LATENCY + PRODUCT_LATENCY
        return 1 + PRODUCT_LATENCY + 1

    @property
    def latency(self) -> int:
        """Cycles from a beat's transfer to its output: ``act``, ``act * up``, the clamp."""
        return self.activation_latency + PRODUCT_LATENCY + 1

    def elaborate(self, platform):
        m = Module()
        beat = join(m, "beat", self.gate, self.up)
        pipe = QueuedPipeline(m, beat, self.out, self.latency)
        lanes = zip(self.gate.payload.values, self.up.payload.values, pipe.payload.values)
        # A platform may ask for the sigmoid tables in distributed RAM (the KV260's
        # block RAM is short; hw.weights.ram_attributes).
        table_attrs = ram_attributes(platform, "sigmoid")
        for lane, (gate, up, out) in enumerate(lanes):
            act = self._activation_stages(m, pipe, lane, gate, table_attrs)
            up_held = delay(m, up, self.activation_latency, pipe.advance, f"up{lane}_")
            h = rounded_product(m, act, up_held, F_ACT, pipe.advance, f"h{lane}")
            m.d.sync += out.eq(saturate_bits(h, 32))
        last = delay(m, self.gate.payload.last, self.latency - 1, pipe.advance, "last")
        m.d.sync += pipe.payload.last.eq(last)
        return m

    def _activation_stages(self, m, pipe, lane, gate, table_attrs):
        """``act(gate)``, registered ``activation_latency`` stages after ``gate``."""
        if self._activation == "silu":
            sig = sigmoid(m, gate, pipe.advance, name=f"sigmoid{lane}", attrs=table_attrs)
            gate_held = delay(m, gate, SIGMOID_LATENCY, pipe.advance, f"gate{lane}_")
            act = rounded_product(m, gate_held, sig, F_SIGMOID, pipe.advance, f"act{lane}")
            # |gate * sig| <= 2**31 * 2**15, so act fits 33 bits: a 16-bit high limb.
            return act[:33].as_signed()
        positive = Signal(31, name=f"positive{lane}")
        m.d.sync += positive.eq(Mux(gate > 0, gate[:31], 0))
        square = rounded_product(m, positive, positive, F_ACT, pipe.advance, f"square{lane}")
        act = Signal(signed(32), name=f"act{lane}")
        m.d.sync += act.eq(saturate_bits(square, 32))
        return act
