"""The controller: runs the host-compiled program over the units (docs/program.md).

It is two parts (docs/accelerator.md): the :class:`~.sequencer.Sequencer` fetches and
decodes each instruction, hands its commands out, waits for it, and keeps the counters;
the :class:`~.datapath.Datapath` holds the units and connects their streams by opcode.
They meet at one :class:`~.interface.ExecuteSignature`.
"""

from amaranth import Module
from amaranth.lib import wiring

from ..config import AcceleratorConfig
from .datapath import Datapath
from .interface import (CONTROLLER_COUNTERS, COUNTER_OF_OPCODE, WORD_COUNTERS,
                        controller_members, instruction_layout)
from .sequencer import Sequencer

__all__ = ["Controller", "instruction_layout", "CONTROLLER_COUNTERS", "COUNTER_OF_OPCODE",
           "WORD_COUNTERS"]


class Controller(wiring.Component):
    """Fetch, decode and run instructions, one at a time, over the scratchpad and units.

    A RUN checks ``tokens`` and ``position`` (a bad value ends the run at once with its
    status and changes nothing), then executes instructions from ``program`` until END.
    Each instruction hands its commands to the units it needs (vector readers and
    writer on the scratchpad, the gain feeder, the codes buffer, the TLMM core, the
    attention block) and waits until its last result is stored. The memory port goes to
    the unit that needs it; ``busy`` says the controller owns it.

    Members
    -------
    run : ``In(stream.Signature(8))``
    finished : ``Out(stream.Signature(run_result_layout()))`` (status, runs, cycles)
    position, tokens, program : ``In(32)`` (registers)
    status : ``Out(8)``; run_tag : ``Out(8)`` (the last RUN's argument); busy : ``Out(1)``
    cycles, ..., runs, fetch_words, ..., attend_words : ``Out(32)`` (:data:`CONTROLLER_COUNTERS`)
    memory : ``Out(MemoryPortSignature(config.memory))``
    weights : ``Out(MemoryPortSignature(config.weight_memory))`` (only with
        ``config.weight_port``: the TLMM's and the head's port)
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__(controller_members(config))

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer = sequencer = Sequencer(self._config)
        m.submodules.datapath = datapath = Datapath(self._config)
        wiring.connect(m, sequencer.execute, datapath.execute)
        wiring.connect(m, datapath.memory, sequencer.unit_memory)
        wiring.connect(m, sequencer.memory, wiring.flipped(self.memory))
        if self._config.weight_port:
            wiring.connect(m, datapath.weights, sequencer.unit_weights)
            wiring.connect(m, sequencer.weights, wiring.flipped(self.weights))
        wiring.connect(m, wiring.flipped(self.run), sequencer.run)
        wiring.connect(m, sequencer.finished, wiring.flipped(self.finished))
        m.d.comb += [sequencer.program.eq(self.program), sequencer.steps.eq(self.steps)]
        for name in ("position", "tokens"):
            m.d.comb += [getattr(sequencer, name).eq(getattr(self, name)),
                         getattr(datapath, name).eq(getattr(self, name))]
        for name in ("status", "run_tag", "busy") + CONTROLLER_COUNTERS:
            m.d.comb += getattr(self, name).eq(getattr(sequencer, name))
        return m
