"""The accelerator's memory ports on a board memory's ports (the board tops' one wiring)."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ..config import AcceleratorConfig
from .arbiter import PortArbiter
from .port import MemoryPortSignature
from .stripe import PortStriper

__all__ = ["BoardPorts", "BUFFERED_CHUNKS"]

#: Chunks each striper buffers per port (its default buffer) and, with two stripers on
#: the ports, at most has in flight per port.
BUFFERED_CHUNKS = 4


class BoardPorts(wiring.Component):
    """The top's ``memory`` port, and its ``weights`` port if it has one, on the
    ``config.memory_ports`` ports of a board memory.

    - One port: ``units`` is port 0.
    - Several: ``units`` goes through a :class:`PortStriper` across them all.
    - With a weight port (``config.weight_port``): ``weights`` goes through a striper
      of ``weight_port_words``-wide client words across all the ports, ``units`` across
      the first ``config.units_ports`` of them (a bus word per cycle needs that share;
      directly to port 0 if it is one), and each of those is a :class:`PortArbiter` of
      the two sides (the units' first: it is the only one that writes); the other ports
      are the weight striper's alone. The controller runs one instruction at a time, so the
      two rarely contend; the arbiters keep each read's words with its client whatever
      they do. A port returns its words in command order, so one client's words could
      wait behind the other's while that client waits for this one: each striper
      therefore has at most :data:`BUFFERED_CHUNKS` chunks in flight per port, which its
      buffer for that port holds, so every word a port returns has room and no port
      ever stalls on a client.

    ``chunk_words`` (a power of two, in bus words) is the stripers' chunk: the board
    ports' longest burst, so each chunk is one burst.

    Members
    -------
    units : ``In(MemoryPortSignature(config.memory))``
    weights : ``In(MemoryPortSignature(config.weight_memory))`` (only with ``config.weight_port``)
    memory : ``Out(MemoryPortSignature(config.memory)).array(config.memory_ports)``
    """

    def __init__(self, config: AcceleratorConfig, chunk_words: int):
        self._config, self._chunk_words = config, chunk_words
        super().__init__({
            "units": In(MemoryPortSignature(config.memory)),
            **({"weights": In(MemoryPortSignature(config.weight_memory))}
               if config.weight_port else {}),
            "memory": Out(MemoryPortSignature(config.memory)).array(config.memory_ports),
        })

    @staticmethod
    def latency(config: AcceleratorConfig) -> dict:
        """Cycles the ports add to a read, command to first word: ``{"units": ..,
        "weights": ..}`` (the performance model's). A weight-port word also waits for its
        ``weight_port_words - 1`` further bus words at one board port's rate, which only
        the memory knows (:attr:`PortStriper.latency` counts a word per cycle)."""
        striped = PortStriper.LATENCY if config.units_ports > 1 else 0
        if not config.weight_port:
            return {"units": striped, "weights": striped}
        # A weight read's first chunk may go to a port without an arbiter: one cycle
        # sooner, which the model does not follow (a cycle per LINEAR or HEAD).
        return {"units": striped + PortArbiter.LATENCY,
                "weights": PortStriper.LATENCY + PortArbiter.LATENCY}

    def elaborate(self, platform):
        m = Module()
        config = self._config
        units = self._striped(m, "striper", self.units, config.units_ports, 1)
        if not config.weight_port:
            for inner, outer in zip(units, self.memory):
                connect(m, inner, flipped(outer))
            return m
        weights = self._striped(m, "weight_striper", self.weights, config.memory_ports,
                                config.weight_port_words)
        for index, outer in enumerate(self.memory):
            if index < len(units):
                arbiter = m.submodules[f"arbiter{index}"] = PortArbiter(config.memory)
                connect(m, units[index], arbiter.client[0])
                connect(m, weights[index], arbiter.client[1])
                connect(m, arbiter.memory, flipped(outer))
            else:
                connect(m, weights[index], flipped(outer))
        return m

    def _striped(self, m, name, client, ports, ratio) -> list:
        """``client``'s port as ``ports`` ports: itself when one, else through a striper
        (which, beside a second one, keeps no more chunks in flight than it buffers)."""
        if ports == 1:
            return [flipped(client)]
        chunk, shared = self._chunk_words, {}
        if self._config.weight_port:
            shared = dict(buffer_words=BUFFERED_CHUNKS * chunk,
                          chunks_in_flight=BUFFERED_CHUNKS * ports)
        striper = m.submodules[name] = PortStriper(self._config.memory, ports, chunk,
                                                   ratio=ratio, **shared)
        connect(m, flipped(client), striper.client)
        return list(striper.memory)
