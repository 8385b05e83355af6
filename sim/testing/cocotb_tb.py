"""Shared pieces of the cocotb testbenches (tier 2): stream BFMs, traffic, clock and reset.

Amaranth streams appear in the Verilog as ``<prefix>__payload``, ``__valid`` and
``__ready`` (struct payloads flattened, first field at the LSB); the bus functional
models here drive and sample them, and payloads are packed and unpacked through the
same ``hw.layouts`` the gateware uses.
"""

import logging
import random

import cocotb
from cocotbext.axi.stream import define_stream

from ..backend.clocking import reset, start_clock

__all__ = ["AmStreamBus", "AmStreamTransaction", "AmStreamSource", "AmStreamSink", "TRAFFIC",
           "ALL_TRAFFIC", "random_pauses", "stream_bfm", "start_clock", "reset", "MemoryLoader"]

AmStreamBus, AmStreamTransaction, AmStreamSource, AmStreamSink, _ = define_stream(
    "AmStream", signals=["payload", "valid", "ready"])

# (valid gap probability, ready stall probability), as TRAFFIC in sim/testing/amaranth_tb.py.
TRAFFIC = {"smooth": (0.0, 0.0), "gaps": (0.4, 0.0), "backpressure": (0.0, 0.5),
           "both": (0.3, 0.3)}
ALL_TRAFFIC = [cocotb.Param(name, name=name) for name in TRAFFIC]


def random_pauses(rng: random.Random, probability: float):
    while True:
        yield rng.random() < probability


def stream_bfm(dut, prefix: str, cls, pause: float = 0.0, rng: random.Random = None):
    """A source or sink on the stream ``prefix``, pausing with the given probability."""
    bus = AmStreamBus.from_prefix(dut, prefix, bus_separator="__")
    bfm = cls(bus, dut.clk, dut.rst)
    bfm.log.setLevel(logging.WARNING)                 # not one line per reset edge
    if pause:
        bfm.set_pause_generator(random_pauses(rng or random.Random(0), pause))
    return bfm


class MemoryLoader:
    """Stores bytes through a memory port's write channels (``<prefix>__write_cmd``,
    ``__write_data``, ``__write_done``), as a host loads a model; never pauses."""

    def __init__(self, dut, prefix: str, memory):
        from tritium.hw.memory.port import command_layout
        self.memory, self.commands = memory, command_layout(memory)
        self.write_cmd = stream_bfm(dut, f"{prefix}__write_cmd", AmStreamSource)
        self.write_data = stream_bfm(dut, f"{prefix}__write_data", AmStreamSource)
        self.write_done = stream_bfm(dut, f"{prefix}__write_done", AmStreamSink)

    async def store(self, data: bytes, base: int) -> int:
        """Write ``data`` from bus word ``base`` on; return the number of bus words."""
        width = self.memory.bytes_per_word
        data = bytes(data) + bytes(-len(data) % width)
        count, longest = len(data) // width, 2 ** self.memory.len_width - 1
        for start in range(0, count, longest):
            words = min(longest, count - start)
            cmd = self.commands.const({"addr": base + start, "words": words})
            await self.write_cmd.send(AmStreamTransaction(payload=cmd.as_bits()))
            for i in range(start, start + words):
                word = int.from_bytes(data[i * width:(i + 1) * width], "little")
                await self.write_data.send(AmStreamTransaction(payload=word))
            await self.write_done.recv()
        return count
