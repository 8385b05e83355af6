"""The memory port: one read/write interface to external or on-chip memory.

Clients (the weight buffer manager, later the KV cache and the host link) issue
commands of ``words`` consecutive bus words starting at word address ``addr``; a
read returns exactly that many words on ``read_data``, in order, the last one marked
``last``; a write takes exactly that many words on ``write_data`` and acknowledges the
command on ``write_done`` once all of them are stored. Addresses count bus words of
``data_width`` bits, not bytes. Every implementation (on-chip, simulation model with
bandwidth and latency, AXI4 master) serves this same signature.
"""

from amaranth import Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import MemoryConfig

# MemoryConfig (the port geometry, a plain config) is defined in hw/config.py and re-exported.
__all__ = ["MemoryConfig", "MemoryPortSignature", "command_layout", "read_data_layout",
           "aligned_piece"]


def command_layout(config: MemoryConfig) -> data.StructLayout:
    return data.StructLayout({"addr": unsigned(config.addr_width),
                              "words": unsigned(config.len_width)})


def aligned_piece(m: Module, addr, left, align_words: int, name: str) -> tuple:
    """The next piece of a command at word ``addr`` with ``left`` words to go, cut at
    the next multiple of ``align_words`` (a power of two): ``(words, final)``, where
    ``final`` says the piece is the command's last. The AXI master's bursts
    (``BurstSplitter``) and the port striper's chunks (``PortStriper``) are cut so; the
    words to the cut are the named signal ``<name>_room``."""
    room = Signal(range(align_words + 1), name=f"{name}_room")
    m.d.comb += room.eq(align_words - addr[:exact_log2(align_words)])
    final = left <= room
    return Mux(final, left, room), final


def read_data_layout(config: MemoryConfig) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(config.data_width), "last": unsigned(1)})


class MemoryPortSignature(wiring.Signature):
    """The client's view of a memory port (the memory side uses ``.flip()``).

    Members
    -------
    read_cmd : ``Out(stream.Signature(command_layout))``
        Read ``words`` (>= 1) words from ``addr``.
    read_data : ``In(stream.Signature(read_data_layout))``
        The words of the read commands, in command order; ``last`` ends a command.
    write_cmd : ``Out(stream.Signature(command_layout))``
        Write ``words`` (>= 1) words to ``addr``.
    write_data : ``Out(stream.Signature(unsigned(data_width)))``
        The words of the write commands, in command order.
    write_done : ``In(stream.Signature(unsigned(1)))``
        One transfer per write command, after its last word is stored.
    """

    def __init__(self, config: MemoryConfig):
        self._config = config
        super().__init__({
            "read_cmd": Out(stream.Signature(command_layout(config))),
            "read_data": In(stream.Signature(read_data_layout(config))),
            "write_cmd": Out(stream.Signature(command_layout(config))),
            "write_data": Out(stream.Signature(unsigned(config.data_width))),
            "write_done": In(stream.Signature(unsigned(1))),
        })

    @property
    def config(self) -> MemoryConfig:
        return self._config

    def __eq__(self, other):
        return isinstance(other, MemoryPortSignature) and self._config == other._config

    def __repr__(self):
        return f"MemoryPortSignature({self._config!r})"
