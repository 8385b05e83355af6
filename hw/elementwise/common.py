"""Payload layouts and handshake helpers shared by the element-wise components."""

from amaranth import Module
from amaranth.hdl import signed
from amaranth.lib import data

from ..fixedpoint import scale_layout
from ..stream import Handshake

__all__ = ["acc_beat_layout", "gain_beat_layout", "scale_pair_layout", "join"]


def acc_beat_layout(lanes: int, acc_width: int) -> data.StructLayout:
    """``lanes`` consecutive TLMM accumulators of a vector; ``last`` ends the vector."""
    return data.StructLayout({"acc": data.ArrayLayout(signed(acc_width), lanes),
                              "last": 1})


def gain_beat_layout(lanes: int) -> data.ArrayLayout:
    """``lanes`` int16 norm gains, aligned with the beat of the vector they multiply."""
    return data.ArrayLayout(signed(16), lanes)


scale_pair_layout = data.StructLayout({"a": scale_layout, "b": scale_layout})


def join(m: Module, name: str, *streams, held=()):
    """Join streams beat by beat into one :class:`~tritium.hw.stream.Handshake`.

    A transfer happens when every stream in ``streams`` is valid; each of them is then
    taken. Each ``(stream, take)`` in ``held`` is a per-vector side input: it must be
    valid for every beat and is taken only with the beat for which ``take`` holds (the
    vector's ``last``).
    """
    joined = Handshake(name)
    valids = [s.valid for s in streams] + [s.valid for s, _ in held]
    all_valid = valids[0]
    for valid in valids[1:]:
        all_valid = all_valid & valid
    m.d.comb += joined.valid.eq(all_valid)
    for s in streams:
        m.d.comb += s.ready.eq(joined.transfer)
    for s, take in held:
        m.d.comb += s.ready.eq(joined.transfer & take)
    return joined
