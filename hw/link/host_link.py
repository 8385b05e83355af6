"""The host link: SLIP-framed commands in, replies out, over a byte stream."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..memory.port import MemoryConfig
from .commands import CommandUnit
from .receiver import FrameReceiver
from .sender import FrameSender
from .slip import SlipDecoder, SlipEncoder

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """Line bytes in, checked frames executed, replies out (``docs/link.md``).

    ``rx`` -> :class:`SlipDecoder` -> :class:`FrameReceiver` (payload into the frame
    buffer) -> :class:`CommandUnit` -> :class:`FrameSender` -> :class:`SlipEncoder` ->
    ``tx``. One frame at a time: the next frame's bytes wait until the current frame's
    reply has been handed to the sender.

    Parameters
    ----------
    memory : MemoryConfig
        The memory port's geometry (WRITE and READ move whole bus words).
    memory_words : int
        Words of memory behind the port; commands beyond it are rejected.
    max_payload : int
        The frame buffer's size in bytes.
    design : int
        A 32-bit identifier of the design, returned by INFO, so the host can check
        it talks to the hardware it compiled for.

    Members
    -------
    rx : ``In(stream.Signature(8))``
    tx : ``Out(stream.Signature(8))``
    memory : ``Out(MemoryPortSignature(memory))``
    registers : ``Out(RegisterBusSignature())``
    run : ``Out(stream.Signature(8))``
    finished : ``In(stream.Signature(run_result_layout()))``
    """

    _PASSED = ("memory", "registers", "run", "finished")

    def __init__(self, memory: MemoryConfig, memory_words: int, max_payload: int = 1024,
                 design: int = 0):
        self._unit = CommandUnit(memory, memory_words, max_payload, design)
        self._max_payload = max_payload
        unit = self._unit.signature.members          # the unit's outward ports are ours
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            **{name: unit[name] for name in self._PASSED},
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = SlipDecoder()
        m.submodules.receiver = receiver = FrameReceiver(self._max_payload)
        m.submodules.unit = unit = self._unit
        m.submodules.sender = sender = FrameSender()
        m.submodules.encoder = encoder = SlipEncoder()
        m.submodules.buffer = buffer = Memory(shape=8, depth=self._max_payload, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        wiring.connect(m, wiring.flipped(self.rx), decoder.line)
        wiring.connect(m, decoder.frames, receiver.frames)
        wiring.connect(m, receiver.frame, unit.frame)
        wiring.connect(m, unit.reply, sender.reply)
        wiring.connect(m, unit.payload, sender.payload)
        wiring.connect(m, sender.frames, encoder.frames)
        wiring.connect(m, encoder.line, wiring.flipped(self.tx))
        for name in self._PASSED:
            wiring.connect(m, getattr(unit, name), wiring.flipped(getattr(self, name)))
        m.d.comb += [write.addr.eq(receiver.buffer_addr), write.data.eq(receiver.buffer_data),
                     write.en.eq(receiver.buffer_en),
                     read.addr.eq(unit.buffer_addr), unit.buffer_data.eq(read.data)]
        return m
