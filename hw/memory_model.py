"""Board memory models: what a board's external memory sustains, port by port.

A :class:`MemoryModel` describes a board's memory the way it measures: a set of ports,
each with its own bus width, sustained read rate and read latency; groups of ports that
share a rate (two ports behind one DDR controller port); and an aggregate rate that all
ports together cannot exceed. The simulation model of the same name
(:class:`~tritium.hw.memory.board.BoardMemory`) enforces exactly these limits cycle by
cycle, and the analytic performance model (:mod:`tritium.host.performance`) computes with
them, so a simulated figure and a derived one rest on the same numbers.

Rates are in bytes per second and latencies in nanoseconds, because that is how they are
measured; :meth:`MemoryModel.port_bytes_per_cycle` and friends turn them into the
per-cycle figures of a design clocked at ``clock_hz`` (a port runs on the design's clock,
so a slower clock moves fewer bytes per second, down to the bus width per cycle).

This module imports nothing but the standard library: the gateware, the golden model,
the host and the CLI all use it.
"""

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["PortModel", "PortGroup", "MemoryModel", "MEMORY_MODELS", "memory_model"]


def _positive(owner, name, value, kind=(int, float)):
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
        raise ValueError(f"{owner}.{name} must be a positive finite number, not {value!r}")


@dataclass(frozen=True)
class PortModel:
    """One memory port.

    ``bus_bytes`` bytes move per cycle at most (the port's data width; ``None``: one word
    of the design's memory bus per cycle, as on-chip memory does); alone, the port
    sustains ``bytes_per_second`` of reads (``None``: as fast as its bus); the first word
    of a read arrives ``latency_ns`` after the command. ``max_burst`` is the longest
    burst the port takes, in beats of ``bus_bytes`` (``None``: no limit), which the AXI
    master of a board must respect; the sustained rate already includes its cost.
    """
    name: str
    bus_bytes: int = None
    bytes_per_second: float = None
    latency_ns: float = 0.0
    max_burst: int = None

    def __post_init__(self):
        if self.bus_bytes is not None:
            _positive("PortModel", "bus_bytes", self.bus_bytes, int)
        if self.bytes_per_second is not None:
            _positive("PortModel", "bytes_per_second", self.bytes_per_second)
        if isinstance(self.latency_ns, bool) or not isinstance(self.latency_ns, (int, float)) \
                or not 0 <= self.latency_ns < math.inf:
            raise ValueError(f"PortModel.latency_ns must be a non-negative number, "
                             f"not {self.latency_ns!r}")
        if self.max_burst is not None:
            _positive("PortModel", "max_burst", self.max_burst, int)


@dataclass(frozen=True)
class PortGroup:
    """Ports that share one upstream port: together they move ``bytes_per_second``."""
    ports: tuple
    bytes_per_second: float

    def __post_init__(self):
        _positive("PortGroup", "bytes_per_second", self.bytes_per_second)
        if len(self.ports) < 2 or len(set(self.ports)) != len(self.ports):
            raise ValueError(f"a PortGroup needs two or more distinct ports, not {self.ports!r}")


@dataclass(frozen=True)
class MemoryModel:
    """A board's external memory (see the module docstring).

    ``aggregate_bytes_per_second`` bounds all ports together (``None``: no bound beyond
    the ports and groups). ``source`` says where the figures come from.
    """
    name: str
    ports: tuple
    groups: tuple = ()
    aggregate_bytes_per_second: float = None
    source: str = ""

    def __post_init__(self):
        if not self.ports:
            raise ValueError(f"memory model {self.name!r} needs at least one port")
        names = [port.name for port in self.ports]
        if len(set(names)) != len(names):
            raise ValueError(f"memory model {self.name!r} names a port twice: {names}")
        for group in self.groups:
            unknown = set(group.ports) - set(names)
            if unknown:
                raise ValueError(f"memory model {self.name!r}: group names unknown ports "
                                 f"{sorted(unknown)}")
        if self.aggregate_bytes_per_second is not None:
            _positive("MemoryModel", "aggregate_bytes_per_second",
                      self.aggregate_bytes_per_second)

    def port_index(self, name: str) -> int:
        return [port.name for port in self.ports].index(name)

    def port_bytes_per_cycle(self, index: int, clock_hz: int, word_bytes: int) -> Fraction:
        """Bytes per cycle port ``index`` moves alone at ``clock_hz`` with a memory bus
        of ``word_bytes`` bytes, which moves at most one word per cycle (exact)."""
        port = self.ports[index]
        rate = Fraction(min(word_bytes, port.bus_bytes or word_bytes))
        if port.bytes_per_second is not None:
            rate = min(rate, _per_cycle(port.bytes_per_second, clock_hz))
        return rate

    def burst_words(self, index: int, word_bytes: int) -> int:
        """The longest burst port ``index`` takes, in words of ``word_bytes`` bytes (at
        least one; 256, AXI4's longest, for a port without a limit)."""
        port = self.ports[index]
        if port.max_burst is None:
            return 256
        return max(1, port.max_burst * (port.bus_bytes or word_bytes) // word_bytes)

    def latency_cycles(self, index: int, clock_hz: int) -> int:
        """Cycles from a read command on port ``index`` to its first word (rounded up)."""
        return math.ceil(self.ports[index].latency_ns * clock_hz / 1e9 - 1e-9)

    def group_caps(self, used: int, clock_hz: int) -> list:
        """``(port indices, bytes per cycle)`` of every shared bound on the first ``used``
        ports: each group with two or more of them, then the aggregate."""
        caps = []
        for group in self.groups:
            members = tuple(i for i in range(used) if self.ports[i].name in group.ports)
            if len(members) > 1:
                caps.append((members, _per_cycle(group.bytes_per_second, clock_hz)))
        if self.aggregate_bytes_per_second is not None and used > 1:
            caps.append((tuple(range(used)),
                         _per_cycle(self.aggregate_bytes_per_second, clock_hz)))
        return caps

    def sustained_bytes_per_cycle(self, used: int, clock_hz: int, word_bytes: int) -> Fraction:
        """What the first ``used`` ports sustain together when every one streams: each
        port at its own rate, then each shared bound applied (a streaming port takes an
        equal share of a bound it hits)."""
        if not 1 <= used <= len(self.ports):
            raise ValueError(f"memory model {self.name!r} has {len(self.ports)} ports, "
                             f"not {used}")
        rates = [self.port_bytes_per_cycle(i, clock_hz, word_bytes) for i in range(used)]
        for members, cap in self.group_caps(used, clock_hz):
            total = sum(rates[i] for i in members)
            if total > cap:
                for i in members:
                    rates[i] = rates[i] * cap / total
        return sum(rates)


def _per_cycle(bytes_per_second: float, clock_hz: int) -> Fraction:
    # A rate is given to three or four significant figures; its decimal is exact enough.
    return Fraction(repr(float(bytes_per_second))) / clock_hz


# The Kria KV260's PS DDR4 seen from the programmable logic through the four 128-bit
# S_AXI_HP ports at 250 MHz. Measured under Linux by the independent open bitnet-kv260
# project (reads): 1 / 2 / 3 / 4 HP ports sustain 3.96 / 7.89 / 11.61 / 13.33 GB/s;
# HP1 and HP2 share one DDR controller port; bursts into the PS are at most 16 beats
# (AXI3); all masters together get about 14 GB/s. Modelled as: each port 3.96 GB/s
# alone; HP1 + HP2 together 7.65 GB/s, the figure that makes three ports (HP0-HP2)
# sustain the measured 11.61; all four 13.33 GB/s. Two ports then give 7.92 GB/s
# (measured 7.89, 0.4% apart). The read latency of 160 ns (40 cycles at 250 MHz) is an
# assumption (docs/performance.md): no measurement of it was published.
_KV260_SOURCE = ("measured by the independent bitnet-kv260 project under Linux, 128-bit "
                 "HP ports at 250 MHz, reads: 1/2/3/4 ports 3.96/7.89/11.61/13.33 GB/s; "
                 "HP1 and HP2 share a DDR controller port; bursts of at most 16 beats; "
                 "latency 160 ns assumed")

MEMORY_MODELS = {
    "kv260": MemoryModel(
        name="kv260",
        ports=tuple(PortModel(f"HP{i}", bus_bytes=16, bytes_per_second=3.96e9,
                              latency_ns=160.0, max_burst=16) for i in range(4)),
        groups=(PortGroup(("HP1", "HP2"), bytes_per_second=7.65e9),),
        aggregate_bytes_per_second=13.33e9,
        source=_KV260_SOURCE),
    # Block RAM inside the design (the tiny and ulx3s presets): a word of the design's
    # bus per cycle, no latency beyond the memory's own pipeline (docs/memory.md).
    "onchip": MemoryModel(
        name="onchip", ports=(PortModel("bram"),),
        source="the OnChipMemory gateware: one word per cycle, no latency beyond its pipeline"),
}


def memory_model(name: str) -> MemoryModel:
    """The memory model called ``name``; ``ValueError`` lists the known ones."""
    try:
        return MEMORY_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown memory model {name!r}; known: "
                         f"{', '.join(sorted(MEMORY_MODELS))}") from None
