"""The matmul core: weight buffer manager and TLMM engine behind one job stream."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import act_beat_layout, tlmm_result_layout, weight_word_layout
from ..memory.port import MemoryConfig
from ..stream import Broadcast, register_stage
from ..weights import (COUNTER_WIDTH, WeightBufferManager, weight_job_layout,
                       weight_source_members)
from .engine import TLMMEngine

__all__ = ["TLMMCore", "core_members"]

COUNTERS = ("busy_cycles", "weight_stall_cycles", "table_stall_cycles", "output_stall_cycles")


def core_members(config: TLMMConfig, memory: MemoryConfig, queued: bool = False) -> dict:
    """The members of :class:`TLMMCore`'s signature: its weights from ``memory``, or with
    ``queued`` the bus words of a :class:`~tritium.hw.weights.WeightPrefetcher` on
    ``queue``."""
    return {
        "job": In(stream.Signature(weight_job_layout(config, memory))),
        "acts": In(stream.Signature(act_beat_layout(config))),
        "results": Out(stream.Signature(tlmm_result_layout(config))),
        **weight_source_members(config, memory, queued),
        **{name: Out(COUNTER_WIDTH) for name in COUNTERS + ("fetched_words",)},
    }


class TLMMCore(wiring.Component):
    """One ternary linear per job: the weights come from memory, the activations in.

    A job names the packed matrix (``base`` bus word, ``chunks``, ``row_blocks``) and
    the number of ``tokens``; the activation and result streams are the engine's
    (:class:`TLMMEngine`). The weight buffer manager fetches each weight word once
    and replays it for every token of the tile; each word reaches the engine
    :attr:`WORD_STAGES` cycles after the buffer's read port gives it, so the engine's
    table look-up starts from a register rather than from the buffer's block RAM.

    Members
    -------
    job : ``In(stream.Signature(weight_job_layout))``
    acts : ``In(stream.Signature(act_beat_layout))``
    results : ``Out(stream.Signature(tlmm_result_layout))``
    memory : ``Out(MemoryPortSignature)``
        Not ``queued``; with ``queued``, ``queue : In(stream.Signature(data_width))``, the
        prefetched words, and ``loads``, the matrices they are
        (:class:`~tritium.hw.weights.WeightBufferManager`).
    busy_cycles, weight_stall_cycles, table_stall_cycles, output_stall_cycles,
    fetched_words : ``Out(32)``
        The engine's and the buffer manager's counters (see those classes).
    """

    #: Register stages (skid buffers) on the weight words between the buffer's block RAM
    #: and the engine: the block-RAM read and the table read take a cycle each.
    WORD_STAGES = 1

    def __init__(self, config: TLMMConfig, memory: MemoryConfig, burst: int = 64,
                 queued: bool = False):
        self._config, self._memory, self._burst, self._queued = config, memory, burst, queued
        super().__init__(core_members(config, memory, queued))

    @property
    def config(self) -> TLMMConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        m.submodules.jobs = jobs = Broadcast(self.job.payload.shape(), ("weights", "engine"))
        m.submodules.buffer = buffer = WeightBufferManager(self._config, self._memory,
                                                           self._burst, self._queued)
        m.submodules.engine = engine = TLMMEngine(self._config)
        wiring.connect(m, wiring.flipped(self.job), jobs.i)
        wiring.connect(m, jobs.weights, buffer.job)
        m.d.comb += [
            engine.job.valid.eq(jobs.engine.valid), jobs.engine.ready.eq(engine.job.ready),
            engine.job.payload.chunks.eq(jobs.engine.payload.chunks),
            engine.job.payload.row_blocks.eq(jobs.engine.payload.row_blocks),
            engine.job.payload.tokens.eq(jobs.engine.payload.tokens),
            self.fetched_words.eq(buffer.fetched_words),
        ]
        if self._queued:
            wiring.connect(m, wiring.flipped(self.queue), buffer.queue)
            wiring.connect(m, wiring.flipped(self.loads), buffer.loads)
        else:
            wiring.connect(m, wiring.flipped(self.memory), buffer.memory)
        words = buffer.words
        for stage in range(self.WORD_STAGES):
            held = stream.Signature(weight_word_layout(self._config.tile)).create(
                path=(f"word{stage}",))
            register_stage(m, words, held, f"word{stage}")
            words = held
        wiring.connect(m, words, engine.weights)
        wiring.connect(m, wiring.flipped(self.acts), engine.acts)
        wiring.connect(m, engine.results, wiring.flipped(self.results))
        for name in COUNTERS:
            m.d.comb += getattr(self, name).eq(getattr(engine, name))
        return m

