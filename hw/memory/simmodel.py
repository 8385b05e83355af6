"""Simulation model of external memory: on-chip storage with DRAM-like bandwidth and latency."""

import math
from fractions import Fraction
from numbers import Rational

from amaranth import Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out, connect, flipped

from .onchip import attach_storage, check_memory_args
from .port import MemoryConfig, MemoryPortSignature, command_layout

__all__ = ["SimMemory", "CommandDelay", "BandwidthLimiter", "as_rate",
           "SIM_MEMORY_PIPELINE_CYCLES"]

#: Cycles a SimMemory read adds on top of ``latency``: command queue, address, memory read.
SIM_MEMORY_PIPELINE_CYCLES = 3

# Width of the cycle stamps of queued commands: a command would have to wait behind
# others for 2**32 cycles before its age wrapped.
_STAMP_WIDTH = 32


def as_rate(value) -> Fraction:
    """Turn a bandwidth in bytes per cycle (int, float or Fraction) into an exact Fraction.

    A float is read as the decimal it prints as, so ``51.2`` is exactly ``256/5``.
    """
    if isinstance(value, bool):
        raise ValueError(f"bytes_per_cycle must be a positive number, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"bytes_per_cycle must be a positive number, not {value!r}")
        rate = Fraction(repr(value))
    elif isinstance(value, Rational):
        rate = Fraction(value)
    else:
        raise ValueError(f"bytes_per_cycle must be a positive int, float or Fraction, "
                         f"not {value!r}")
    if rate <= 0:
        raise ValueError(f"bytes_per_cycle must be a positive number, not {value!r}")
    return rate


class CommandDelay(wiring.Component):
    """Queue commands and release each no earlier than ``latency + 1`` cycles after it entered.

    Commands stay in order; up to ``capacity`` may wait, so the latency of a command
    overlaps the data of the ones before it. A command released as soon as it is due
    leaves ``latency + 1`` cycles after its input transfer (the 1 is the queue itself).

    Members
    -------
    i : ``In(stream.Signature(command_layout(config)))``
        Commands in.
    o : ``Out(stream.Signature(command_layout(config)))``
        The same commands, each once it is due.
    """

    def __init__(self, config: MemoryConfig, latency: int, capacity: int):
        self._latency = latency
        self._capacity = capacity
        self._entry = data.StructLayout({"command": command_layout(config),
                                         "accepted_at": unsigned(_STAMP_WIDTH)})
        super().__init__({
            "i": In(stream.Signature(command_layout(config))),
            "o": Out(stream.Signature(command_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = SyncFIFO(width=self._entry.size, depth=self._capacity)

        now = Signal(_STAMP_WIDTH)
        m.d.sync += now.eq(now + 1)

        entering = self._entry(queue.w_data)
        m.d.comb += [
            entering.command.eq(self.i.payload),
            entering.accepted_at.eq(now),
            queue.w_en.eq(self.i.valid),
            self.i.ready.eq(queue.w_rdy),
        ]

        head = self._entry(queue.r_data)
        head_age = Signal(_STAMP_WIDTH)
        head_due = Signal()
        m.d.comb += [
            head_age.eq(now - head.accepted_at),
            head_due.eq(head_age >= self._latency + 1),
            self.o.valid.eq(queue.r_rdy & head_due),
            self.o.payload.eq(head.command),
            queue.r_en.eq(self.o.ready & head_due),
        ]
        return m


class BandwidthLimiter(wiring.Component):
    """Share a token bucket of ``bytes_per_cycle`` between read and write words.

    Every cycle the bucket gains ``bytes_per_cycle`` bytes of credit (kept exact as the
    integer numerator over the integer denominator); a word costs ``bytes_per_word``.
    At most one word, read or write, is granted per cycle, when the credit covers it.
    When both sides ask, they alternate. The bucket holds at most one word plus one
    cycle's credit, so after an idle spell at most two words go back to back before the
    rate applies. Rates of a word per cycle or more grant a word every cycle.

    Members
    -------
    read_request, write_request : ``In(1)``
        A word waits on that side.
    read_grant, write_grant : ``Out(1)``
        Move that word this cycle.
    wants : ``Out(1)``
        A word waits and this bucket covers it: what a bandwidth shared with other
        ports (:class:`~tritium.hw.memory.board.SharedBandwidth`) is asked for.
    allow : ``In(1, init=1)``
        The shared bandwidth lets the word go (high when nothing is shared).
    """

    read_request: In(1)
    write_request: In(1)
    read_grant: Out(1)
    write_grant: Out(1)
    wants: Out(1)
    allow: In(1, init=1)

    def __init__(self, bytes_per_word: int, bytes_per_cycle: Fraction):
        # In units of 1/denominator bytes: gain `numerator` per cycle, pay `word_cost`.
        self._gain = bytes_per_cycle.numerator
        self._word_cost = bytes_per_word * bytes_per_cycle.denominator
        self._capacity = self._word_cost + self._gain
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        credit = Signal(range(self._capacity + 1), init=self._capacity)
        word_affordable = Signal()
        prefer_write = Signal()
        granted = Signal()
        m.d.comb += [
            word_affordable.eq(credit >= self._word_cost),
            self.wants.eq(word_affordable & (self.read_request | self.write_request)),
            self.read_grant.eq(self.wants & self.allow & self.read_request &
                               ~(self.write_request & prefer_write)),
            self.write_grant.eq(self.wants & self.allow & self.write_request &
                                ~(self.read_request & ~prefer_write)),
            granted.eq(self.read_grant | self.write_grant),
        ]

        refilled = Signal(range(self._capacity + self._gain + 1))
        m.d.comb += refilled.eq(credit + self._gain - Mux(granted, self._word_cost, 0))
        m.d.sync += credit.eq(Mux(refilled > self._capacity, self._capacity, refilled))
        with m.If(self.read_request & self.write_request & granted):
            m.d.sync += prefer_write.eq(self.read_grant)
        return m


class SimMemory(wiring.Component):
    """On-chip storage behind the memory port that behaves like DRAM of a given bandwidth.

    Same storage, address and zero-word rules as :class:`OnChipMemory`, plus:

    - **Latency.** The first word of a read command is valid ``latency + 3`` cycles
      after the command's transfer cycle (:data:`SIM_MEMORY_PIPELINE_CYCLES` = 3: the
      command queue, the address and the memory read), if bandwidth allows. Up to
      ``max_outstanding`` read commands wait in a queue, so the latency of one command
      overlaps the data of those before it: with long enough bursts the sustained rate
      is the bandwidth.
    - **Bandwidth.** Words move only when a token bucket filled at ``bytes_per_cycle``
      covers their ``bytes_per_word`` (:class:`BandwidthLimiter`). Read and write words
      draw from the same bucket (a written word costs what a read word costs) and
      alternate when both wait. At most one word moves per cycle, so rates of
      ``bytes_per_word`` or more per cycle give one word per cycle.
    - **Writes** are not delayed by ``latency``: ``write_done`` follows the last word.

    Parameters
    ----------
    config : :class:`MemoryConfig`
        Port geometry.
    depth : int
        Words of storage, 1 .. ``2**config.addr_width``.
    bytes_per_cycle : int, float or Fraction
        Bandwidth; exact over time (a float is read as its decimal, ``51.2`` = 256/5).
    latency : int
        Extra cycles before the first word of each read command, >= 0.
    init : iterable of int
        Initial contents from word 0.
    max_outstanding : int
        Read commands that may wait out their latency at once, >= 1.

    Members
    -------
    port : ``In(MemoryPortSignature(config))``
        The memory port.
    read_words : ``Out(32)``
        Words delivered on ``read_data`` since reset (wraps), for benchmarks.
    """

    def __init__(self, config: MemoryConfig, depth: int, bytes_per_cycle, latency: int,
                 init=(), max_outstanding: int = 16):
        self._init = check_memory_args(config, depth, init)
        self._bytes_per_cycle = as_rate(bytes_per_cycle)
        if not isinstance(latency, int) or isinstance(latency, bool) or latency < 0:
            raise ValueError(f"latency must be a non-negative integer, not {latency!r}")
        if (not isinstance(max_outstanding, int) or isinstance(max_outstanding, bool)
                or max_outstanding < 1):
            raise ValueError(f"max_outstanding must be a positive integer, "
                             f"not {max_outstanding!r}")
        self._config = config
        self._depth = depth
        self._latency = latency
        self._max_outstanding = max_outstanding
        super().__init__({"port": In(MemoryPortSignature(config)), "read_words": Out(32)})

    @property
    def config(self) -> MemoryConfig:
        """Port geometry."""
        return self._config

    @property
    def bytes_per_cycle(self) -> Fraction:
        """Bandwidth in bytes per cycle, exact."""
        return self._bytes_per_cycle

    @property
    def latency(self) -> int:
        """Extra cycles before the first word of a read (see the class docs for the total)."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        config, depth = self._config, self._depth
        m.submodules.command_delay = command_delay = CommandDelay(
            config, self._latency, self._max_outstanding)
        m.submodules.bandwidth = bandwidth = BandwidthLimiter(
            config.bytes_per_word, self._bytes_per_cycle)
        connect(m, flipped(self.port.read_cmd), command_delay.i)
        # A simulation model, never built into a board: one memory, whatever its depth,
        # so its latency is the one it models.
        reader, writer = attach_storage(m, self.port, config, depth, self._init,
                                        command_delay.o, banked=False)
        m.d.comb += [
            bandwidth.read_request.eq(reader.word_request),
            bandwidth.write_request.eq(writer.word_request),
            reader.word_grant.eq(bandwidth.read_grant),
            writer.word_grant.eq(bandwidth.write_grant),
        ]

        with m.If(self.port.read_data.valid & self.port.read_data.ready):
            m.d.sync += self.read_words.eq(self.read_words + 1)
        return m
