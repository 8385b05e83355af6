"""The ternary table-lookup matmul (TLMM) engine."""

from amaranth import Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import (act_beat_layout, table_set_layout, tlmm_job_layout, tlmm_result_layout,
                       weight_word_layout)
from ..weights import COUNTER_WIDTH
from .lookup import LookupTree, TableRAMLookup
from .table import TableBuilder

__all__ = ["TLMMEngine"]



class TLMMEngine(wiring.Component):
    """Multiply int8 activations by a ternary matrix through lookup tables.

    A job multiplies ``tokens`` token rows of K = ``chunks * G * T`` activations by an
    N x K ternary matrix, N = ``row_blocks * R``. Streams, per job:

    - ``acts``: ``chunks * tokens`` beats, K-chunk outer, token inner: beat (kb, p)
      holds activations ``kb*G*T .. (kb+1)*G*T - 1`` of token p;
    - ``weights``: ``chunks * tokens * row_blocks`` words, order (kb, p, rb): the word
      of K-chunk kb and row block rb, presented once per token (the weight buffer
      manager replays a fetched chunk for each token of the tile);
    - ``results``: ``tokens * row_blocks`` beats, order (p, rb), the R accumulators of
      row block rb for token p; ``last`` marks the job's final beat.

    The tables of the next (kb, p) are built while the current ones serve their
    ``row_blocks`` look-ups, so rebuilding never stalls the look-ups once the next
    activation beat is there (in LUT-RAM, ``table_storage="lutram"``, a set takes
    ``entries + 1`` cycles to write, hidden behind sweeps of at least that many row
    blocks). Partial sums live in an on-chip accumulator memory of
    ``tokens * max_row_blocks`` entries. Throughput: one weight word, i.e. R*T*G MACs
    per token, per cycle; an accumulator read-after-write hazard (only when
    ``tokens * row_blocks < 2``) inserts one bubble.

    Members
    -------
    job : ``In(stream.Signature(tlmm_job_layout(config)))``
    acts : ``In(stream.Signature(act_beat_layout(config)))``
    weights : ``In(stream.Signature(weight_word_layout(config.tile)))``
    results : ``Out(stream.Signature(tlmm_result_layout(config)))``
    busy_cycles, weight_stall_cycles, table_stall_cycles, output_stall_cycles : ``Out(32)``
        Wrapping counters since reset: cycles with a job in flight; cycles the engine
        could look up but had no weight word (memory-bound); cycles it waited for the
        next tables (activation-bound); cycles ``results`` back-pressure held it.
    """

    def __init__(self, config: TLMMConfig):
        self._config = config
        super().__init__({
            "job": In(stream.Signature(tlmm_job_layout(config))),
            "acts": In(stream.Signature(act_beat_layout(config))),
            "weights": In(stream.Signature(weight_word_layout(config.tile))),
            "results": Out(stream.Signature(tlmm_result_layout(config))),
            "busy_cycles": Out(COUNTER_WIDTH),
            "weight_stall_cycles": Out(COUNTER_WIDTH),
            "table_stall_cycles": Out(COUNTER_WIDTH),
            "output_stall_cycles": Out(COUNTER_WIDTH),
        })

    @property
    def config(self) -> TLMMConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.accumulators = accumulators = Memory(
            shape=self.results.payload.acc.shape(), depth=self._depth, init=[])

        lookup, current_valid, release = self._tables(m)
        # The whole pipeline advances unless a result beat is refused.
        advance = Signal()
        m.d.comb += [advance.eq(~self.results.valid | self.results.ready),
                     lookup.enable.eq(advance)]

        stage0, stage1, stage2 = (Signal(self._stage_layout, name=f"stage{i}") for i in range(3))
        hazard = Signal()
        accept = self._word_sequencer(m, stage0, current_valid, advance, hazard)
        m.d.comb += lookup.codes.eq(self.weights.payload)
        with m.If(advance):
            m.d.sync += [stage1.eq(stage0), stage1.valid.eq(accept), stage2.eq(stage1)]

        # Accumulate: read at accept, add when the sums arrive two cycles later, then
        # write back, or emit on the last K-chunk. The read port is transparent to the
        # write, so only an access to the address one stage ahead (stage 1) must wait.
        write = accumulators.write_port()
        read = accumulators.read_port(transparent_for=(write,))
        previous = Signal.like(read.data)
        total = Signal.like(read.data)
        with m.If(advance):
            m.d.sync += previous.eq(read.data)
        m.d.comb += [
            read.addr.eq(stage0.addr), read.en.eq(advance),
            hazard.eq(stage1.valid & (stage1.addr == stage0.addr)),
            write.addr.eq(stage2.addr), write.data.eq(total),
            write.en.eq(advance & stage2.valid & ~stage2.emit),
            self.results.valid.eq(stage2.valid & stage2.emit),
            self.results.payload.acc.eq(total), self.results.payload.last.eq(stage2.end),
            release.eq(accept & stage0.sweep_end),
        ]
        for r in range(cfg.rows):
            m.d.comb += total[r].eq(Mux(stage2.first, lookup.sums[r],
                                        previous[r] + lookup.sums[r]))
        self._count(m, advance, current_valid, hazard)
        return m

    @property
    def _depth(self):
        return self._config.tokens * self._config.max_row_blocks

    @property
    def _stage_layout(self):
        return data.StructLayout({
            "valid": unsigned(1), "addr": unsigned(max(1, (self._depth - 1).bit_length())),
            "first": unsigned(1), "emit": unsigned(1), "end": unsigned(1),
            "sweep_end": unsigned(1),
        })

    def _tables(self, m):
        """The look-up stage and its tables: (lookup, a set is there, release the set).

        In registers, the builder's output register holds the next set: when the
        current set serves its last look-up (``release``), the next moves in in the
        same cycle and the builder takes the next activation beat (no bubble). In
        LUT-RAM, :class:`TableRAMLookup` keeps both sets itself.
        """
        release = Signal()
        if self._config.table_storage == "lutram":
            m.submodules.lookup = lookup = TableRAMLookup(self._config)
            wiring.connect(m, wiring.flipped(self.acts), lookup.acts)
            m.d.comb += lookup.release.eq(release)
            return lookup, lookup.loaded, release
        m.submodules.builder = builder = TableBuilder(self._config)
        m.submodules.lookup = lookup = LookupTree(self._config)
        wiring.connect(m, wiring.flipped(self.acts), builder.acts)
        current = Signal(table_set_layout(self._config))
        current_valid = Signal()
        current_free = ~current_valid | release
        m.d.comb += [builder.tables.ready.eq(current_free), lookup.tables.eq(current)]
        with m.If(current_free):
            m.d.sync += [current.eq(builder.tables.payload),
                         current_valid.eq(builder.tables.valid)]
        return lookup, current_valid, release

    def _word_sequencer(self, m, stage0, current_valid, advance, hazard):
        """Accept jobs, then weight words in (kb, p, rb) order; describe each in stage0."""
        cfg = self._config
        job = Signal.like(self.job.payload)
        active = Signal()
        chunk, token, block = (Signal(range(n + 1), name=name) for name, n in
                               (("chunk", cfg.max_chunks), ("token", cfg.tokens),
                                ("block", cfg.max_row_blocks)))
        token_base = Signal.like(stage0.addr)
        accept = Signal()
        token_end, chunk_last, sweep_end = Signal(), Signal(), Signal()
        m.d.comb += [
            self.job.ready.eq(~active),
            accept.eq(active & current_valid & self.weights.valid & advance & ~hazard),
            self.weights.ready.eq(accept),
            token_end.eq(token == job.tokens - 1),
            chunk_last.eq(chunk == job.chunks - 1),
            stage0.addr.eq(token_base + block),
            stage0.first.eq(chunk == 0),
            stage0.emit.eq(chunk_last),
            sweep_end.eq(block == job.row_blocks - 1),
            stage0.sweep_end.eq(sweep_end),
            stage0.end.eq(chunk_last & token_end & sweep_end),
        ]
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [job.eq(self.job.payload), active.eq(1), chunk.eq(0), token.eq(0),
                         block.eq(0), token_base.eq(0)]
        with m.If(accept):
            with m.If(~sweep_end):
                m.d.sync += block.eq(block + 1)
            with m.Else():
                m.d.sync += block.eq(0)
                with m.If(~token_end):
                    m.d.sync += [token.eq(token + 1),
                                 token_base.eq(token_base + cfg.max_row_blocks)]
                with m.Else():
                    m.d.sync += [token.eq(0), token_base.eq(0), chunk.eq(chunk + 1)]
                    with m.If(chunk_last):
                        m.d.sync += active.eq(0)
        self._active = active
        return accept

    def _count(self, m, advance, current_valid, hazard):
        ready_to_look_up = self._active & advance & ~hazard
        events = [
            (self.busy_cycles, self._active | self.results.valid),
            (self.weight_stall_cycles, ready_to_look_up & current_valid & ~self.weights.valid),
            (self.table_stall_cycles, ready_to_look_up & ~current_valid),
            (self.output_stall_cycles, ~advance),
        ]
        for counter, event in events:
            with m.If(event):
                m.d.sync += counter.eq(counter + 1)
