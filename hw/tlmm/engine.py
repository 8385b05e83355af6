"""The ternary table-lookup matmul (TLMM) engine."""

from amaranth import Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import TLMMConfig
from ..layouts import act_beat_layout, tlmm_job_layout, tlmm_result_layout, weight_word_layout
from ..stream import skid
from ..weights import COUNTER_WIDTH
from .lookup import TableRAMLookup, TableRegLookup

__all__ = ["TLMMEngine", "table_lookup"]


def table_lookup(config: TLMMConfig) -> type:
    """The look-up component of the engine's table storage; its ``LATENCY`` is the
    register stages from a weight word to its row sums."""
    return TableRAMLookup if config.table_storage == "lutram" else TableRegLookup


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

    The tables of the next (kb, p) are built into a second bank while the current ones
    serve their ``row_blocks`` look-ups, so rebuilding never stalls the look-ups once
    the next activation beat is there (in registers a set takes a cycle; in LUT-RAM,
    ``table_storage="lutram"``, a set takes ``entries + 2`` cycles to write
    (:func:`~tritium.hw.tlmm.lookup.fill_cycles`), hidden behind sweeps of at least that
    many row blocks). Partial sums live in an on-chip accumulator memory of
    ``tokens * max_row_blocks`` entries. Throughput: one weight word, i.e. R*T*G MACs
    per token, per cycle; an accumulator read-after-write hazard (only when
    ``tokens * row_blocks < 2``) inserts one bubble, and the results' skid register
    costs a cycle after each cycle a result beat is refused.

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

        lookup, loaded, release = self._tables(m)
        # The whole pipeline advances unless a result beat is refused. The results leave
        # through a skid register, so that enable (on every stage, and through the
        # accept on the table swap) starts at flip-flops, not at the consumer's ready.
        emitted = stream.Signature(self.results.payload.shape()).create(path=("emitted",))
        skid(m, emitted, self.results, "results")
        advance = Signal()
        m.d.comb += [advance.eq(~emitted.valid | emitted.ready), lookup.enable.eq(advance)]

        # A word's description, stage by stage beside the look-up: stage k is k cycles
        # after its acceptance; the row sums arrive with it in the last stage.
        stages = [Signal(self._stage_layout, name=f"stage{i}")
                  for i in range(lookup.LATENCY + 1)]
        stage0, stage1, last = stages[0], stages[1], stages[-1]
        hazard = Signal()
        accept, active, single = self._word_sequencer(m, stage0, loaded, advance,
                                                      hazard)
        m.d.comb += lookup.codes.eq(self.weights.payload)
        with m.If(advance):
            m.d.sync += [stage1.eq(stage0), stage1.valid.eq(accept)]
            m.d.sync += [later.eq(earlier) for earlier, later in zip(stages[1:], stages[2:])]

        # Accumulate: read two stages before the sums arrive, add them in the last stage,
        # then write back, or emit on the last K-chunk. The read port is transparent to
        # the write, so only a word one stage ahead of the reading one, which writes the
        # cycle after the read, must not share its address: consecutive words share one
        # only in a job of one token and one row block (``single``, known from the job,
        # so no address compare on the path), and then the word waits a cycle.
        write = accumulators.write_port()
        read = accumulators.read_port(transparent_for=(write,))
        previous = Signal.like(read.data)
        total = Signal.like(read.data)
        with m.If(advance):
            m.d.sync += previous.eq(read.data)
        m.d.comb += [
            read.addr.eq(stages[-3].addr), read.en.eq(advance),
            hazard.eq(stage1.valid & single),
            write.addr.eq(last.addr), write.data.eq(total),
            write.en.eq(advance & last.valid & ~last.emit),
            emitted.valid.eq(last.valid & last.emit),
            emitted.payload.acc.eq(total), emitted.payload.last.eq(last.end),
            release.eq(accept & stage0.sweep_end),
        ]
        for r in range(cfg.rows):
            m.d.comb += total[r].eq(Mux(last.first, lookup.sums[r],
                                        previous[r] + lookup.sums[r]))
        self._count(m, active, advance, loaded, hazard)
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
        """The look-up stage and its two table banks: (lookup, a set is there to read,
        release the set). A set is built into the free bank while the other serves look-ups
        (:class:`TableRegLookup` in registers, :class:`TableRAMLookup` in LUT-RAM)."""
        release = Signal()
        m.submodules.lookup = lookup = table_lookup(self._config)(self._config)
        wiring.connect(m, wiring.flipped(self.acts), lookup.acts)
        m.d.comb += lookup.release.eq(release)
        return lookup, lookup.loaded, release

    def _word_sequencer(self, m, stage0, loaded, advance, hazard):
        """Accept jobs, then weight words in (kb, p, rb) order; describe each in stage0.

        Returns ``(accept, active, single)``: a word is taken, a job is in flight, the
        job has one accumulator address (one token, one row block)."""
        cfg = self._config
        job = Signal.like(self.job.payload)
        active, single = Signal(), Signal()
        chunk, token, block = (Signal(range(n + 1), name=name) for name, n in
                               (("chunk", cfg.max_chunks), ("token", cfg.tokens),
                                ("block", cfg.max_row_blocks)))
        token_base = Signal.like(stage0.addr)
        accept = Signal()
        token_end, chunk_last = Signal(), Signal()
        # block == row_blocks - 1, kept in step with block: a register ahead of the
        # table release (accept & sweep_end), whose fan-out is every table register.
        sweep_end = Signal()
        m.d.comb += [
            self.job.ready.eq(~active),
            accept.eq(active & loaded & self.weights.valid & advance & ~hazard),
            self.weights.ready.eq(accept),
            token_end.eq(token == job.tokens - 1),
            chunk_last.eq(chunk == job.chunks - 1),
            stage0.addr.eq(token_base + block),
            stage0.first.eq(chunk == 0),
            stage0.emit.eq(chunk_last),
            stage0.sweep_end.eq(sweep_end),
            stage0.end.eq(chunk_last & token_end & sweep_end),
        ]
        with m.If(self.job.valid & self.job.ready):
            payload = self.job.payload
            m.d.sync += [job.eq(payload), active.eq(1), chunk.eq(0), token.eq(0),
                         block.eq(0), token_base.eq(0),
                         single.eq((payload.tokens == 1) & (payload.row_blocks == 1)),
                         sweep_end.eq(payload.row_blocks == 1)]
        with m.If(accept):
            with m.If(~sweep_end):
                m.d.sync += [block.eq(block + 1), sweep_end.eq(block + 2 == job.row_blocks)]
            with m.Else():
                m.d.sync += [block.eq(0), sweep_end.eq(job.row_blocks == 1)]
                with m.If(~token_end):
                    m.d.sync += [token.eq(token + 1),
                                 token_base.eq(token_base + cfg.max_row_blocks)]
                with m.Else():
                    m.d.sync += [token.eq(0), token_base.eq(0), chunk.eq(chunk + 1)]
                    with m.If(chunk_last):
                        m.d.sync += active.eq(0)
        return accept, active, single

    def _count(self, m, active, advance, loaded, hazard):
        ready_to_look_up = active & advance & ~hazard
        events = [
            (self.busy_cycles, active | self.results.valid),
            (self.weight_stall_cycles, ready_to_look_up & loaded & ~self.weights.valid),
            (self.table_stall_cycles, ready_to_look_up & ~loaded),
            (self.output_stall_cycles, ~advance),
        ]
        for counter, event in events:
            with m.If(event):
                m.d.sync += counter.eq(counter + 1)
