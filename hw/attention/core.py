"""The attention core: a block of query lanes against one pass over the KV cache."""

from amaranth import Array, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import AttentionConfig
from ..fixedpoint import (Pipeline, RECIPROCAL_LATENCY, exp2_table, reciprocal, saturate,
                          scale_layout, scale_mul, shift_round, shift_round_signed)
from ..layouts import (attention_query_layout, attention_result_layout, key_beat_layout,
                       position_shape)
from ..numerics import F_SCORE

__all__ = ["AttentionCore", "SCORE_LATENCY"]

DOT_WIDTH = 24                  # |q . k| <= 128 * 128 * 256 < 2**23 for head_dim <= 256
ACC_WIDTH = 64                  # o: |o| < 2**55 for contexts up to 2**16
SUM_WIDTH = 48                  # l <= 2**15 * context
SCORE_LATENCY = 6               # register stages of the score pipeline (ScoreUnit)
MAX_RESCALE = 63                # a rescale shift this large already clears every o and l


def _score_job_layout(config: AttentionConfig):
    lanes = config.lanes
    return data.StructLayout({
        "dot": data.ArrayLayout(signed(DOT_WIDTH), lanes), "k_scale": scale_layout,
        "v_scale": scale_layout, "index": position_shape(config), "last": unsigned(1)})


def _update_layout(config: AttentionConfig):
    """Per lane, what one key does to the softmax state (numerics section 6)."""
    lane = data.StructLayout({"active": unsigned(1), "first": unsigned(1),
                              "rescale": unsigned(6), "prob": unsigned(16),
                              "weight": unsigned(33)})
    return data.StructLayout({"lanes": data.ArrayLayout(lane, config.lanes),
                              "last": unsigned(1)})


class ScoreUnit(wiring.Component):
    """From a key's dot products to its softmax update, per lane (latency ``SCORE_LATENCY``).

    For each lane: the score ``S`` in log2 units, its ceiling, the running maximum
    ``M`` (the only state, updated in one stage so consecutive keys see each other's
    maximum), the rescale shift, the probability ``P`` from the exponential table and
    the value weight ``W``. Lanes whose query position lies before the key are
    inactive: their state does not move.

    Members
    -------
    jobs : ``In(stream.Signature(score job))``
        Dot products of one key with every lane's query, with the key's scales.
    updates : ``Out(stream.Signature(update))``
    lane_sq : ``In(scale_layout)`` per lane, ``lane_position``, ``lane_used`` per lane
        The loaded block: ``q_scale * score_scale``, the query positions, which lanes
        hold a query. Stable while keys flow.
    """

    def __init__(self, config: AttentionConfig):
        self._config = config
        super().__init__({
            "jobs": In(stream.Signature(_score_job_layout(config))),
            "updates": Out(stream.Signature(_update_layout(config))),
            "lane_sq": In(data.ArrayLayout(scale_layout, config.lanes)),
            "lane_position": In(data.ArrayLayout(position_shape(config), config.lanes)),
            "lane_used": In(config.lanes),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.jobs, self.updates, SCORE_LATENCY)
        job = self.jobs.payload
        # Key-wide fields ride along the pipeline.
        index, last, v_scale = job.index, job.last, job.v_scale
        for stage in range(1, SCORE_LATENCY + 1):
            index, last, v_scale = (self._delay(m, pipe, value, f"{name}{stage}")
                                    for name, value in (("index", index), ("last", last),
                                                        ("v_scale", v_scale)))
            if stage == 3:
                index3 = index
            if stage == 5:
                v_scale5 = v_scale
        m.d.comb += self.updates.payload.last.eq(last)
        exp_rom = Memory(shape=unsigned(16), depth=256, init=exp2_table())
        m.submodules.exp2 = exp_rom
        for lane in range(self._config.lanes):
            self._lane(m, pipe, lane, job, index3, v_scale5, exp_rom.read_port())
        return m

    @staticmethod
    def _delay(m, pipe, value, name):
        held = Signal.like(value, name=name)
        with m.If(pipe.advance):
            m.d.sync += held.eq(value)
        return held

    def _lane(self, m, pipe, lane, job, index3, v_scale5, exp_port):
        out = self.updates.payload.lanes[lane]
        sq = self.lane_sq[lane]
        reg = lambda shape, name: Signal(shape, name=f"lane{lane}_{name}")
        factor, exponent = reg(32, "factor"), reg(signed(12), "exponent")
        dot1, product, shift = reg(signed(DOT_WIDTH), "dot1"), reg(signed(56), "product"), \
            reg(signed(12), "shift")
        score = reg(signed(32), "score")
        running_max = reg(signed(25), "max")
        rescale, distance = reg(6, "rescale"), reg(34, "distance")
        active, first = reg(1, "active"), reg(1, "first")
        prob = reg(16, "prob")
        weight = reg(33, "weight")
        active5, first5, rescale5 = reg(1, "active5"), reg(1, "first5"), reg(6, "rescale5")
        active6, first6, rescale6, prob6 = reg(1, "active6"), reg(1, "first6"), \
            reg(6, "rescale6"), reg(16, "prob6")

        ceiling = Signal(signed(25), name=f"lane{lane}_ceiling")
        new_max = Signal(signed(25), name=f"lane{lane}_new_max")
        lane_active = Signal(name=f"lane{lane}_active")
        m.d.comb += [
            ceiling.eq((score + (1 << F_SCORE) - 1) >> F_SCORE),
            lane_active.eq(self.lane_used[lane] & (index3 <= self.lane_position[lane])),
        ]
        m.d.comb += new_max.eq(Mux(index3 == 0, ceiling,
                                   Mux(running_max > ceiling, running_max, ceiling)))
        step = new_max - running_max
        m.d.comb += [exp_port.en.eq(pipe.advance),
                     exp_port.addr.eq(((new_max << F_SCORE) - score)[:F_SCORE])]
        with m.If(pipe.advance):
            m.d.sync += [
                # stage 1: the two scale mantissas, and their exponents
                factor.eq(sq.m * job.k_scale.m), exponent.eq(sq.e + job.k_scale.e),
                dot1.eq(job.dot[lane]),
                # stage 2: the exact score product and its shift
                product.eq(dot1 * factor), shift.eq(-exponent - F_SCORE),
                # stage 3: the score, saturated to int32 Q.8
                score.eq(saturate(shift_round_signed(product, shift, max_left=4))),
                # stage 4: running maximum, rescale and the distance below the maximum
                active.eq(lane_active), first.eq(index3 == 0),
                rescale.eq(Mux(step > MAX_RESCALE, MAX_RESCALE, step)),
                distance.eq((new_max << F_SCORE) - score),
                # stage 5: P = E[distance & 255] >> (distance >> 8), rounded
                prob.eq(shift_round(exp_port.data, distance[F_SCORE:], max_shift=17)),
                active5.eq(active), first5.eq(first), rescale5.eq(rescale),
                # stage 6: W = P * absmax(v), Q.12
                weight.eq(shift_round_signed(prob * v_scale5.m, 15 - v_scale5.e,
                                             max_left=1, max_right=34)),
                active6.eq(active5), first6.eq(first5), rescale6.eq(rescale5),
                prob6.eq(prob),
            ]
            with m.If(pipe.valid[3] & lane_active):
                m.d.sync += running_max.eq(new_max)
        m.d.comb += [out.active.eq(active6), out.first.eq(first6), out.rescale.eq(rescale6),
                     out.prob.eq(prob6), out.weight.eq(weight)]


class AttentionCore(wiring.Component):
    """Up to ``lanes`` query heads against one ascending pass over their kv head's cache.

    A block runs in three phases:

    1. **load**: ``queries`` beats fill the lanes, one query head each, until ``last``
       or until every lane is full;
    2. **run**: ``keys`` beats stream keys 0, 1, ... in ascending order,
       ``dims_per_cycle`` dimensions per beat, until a beat with ``last``. Each lane
       keeps the online-softmax state of docs/numerics.md section 6 (running maximum,
       probability sum ``l``, accumulator ``o``) and skips keys after its query's
       position, so one pass serves queries of different positions (causal prefill)
       and different heads of one kv head (grouped-query attention);
    3. **finish**: each loaded lane's ``o / (127 l)`` leaves on ``results``,
       ``dims_per_cycle`` dimensions per beat, lanes in load order, ``last`` on the
       block's final beat.

    In the run phase a key takes ``head_dim / dims_per_cycle`` cycles: the dot
    products (stage A), the score pipeline (:class:`ScoreUnit`) and the value update
    (stage C) overlap across consecutive keys, and the value beats wait in a FIFO for
    their key's score.

    Members
    -------
    score_scale : ``In(scale_layout)``
        ``log2(e) / (127**2 * 2**24 * sqrt(head_dim))`` as the host compiled it.
    queries : ``In(stream.Signature(attention_query_layout(config)))``
    keys : ``In(stream.Signature(key_beat_layout(config)))``
    results : ``Out(stream.Signature(attention_result_layout(config)))``
    """

    def __init__(self, config: AttentionConfig):
        self._config = config
        super().__init__({
            "score_scale": In(scale_layout),
            "queries": In(stream.Signature(attention_query_layout(config))),
            "keys": In(stream.Signature(key_beat_layout(config))),
            "results": Out(stream.Signature(attention_result_layout(config))),
        })

    @property
    def config(self) -> AttentionConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.scores = scores = ScoreUnit(cfg)
        m.submodules.values = values = SyncFIFOBuffered(
            width=8 * cfg.dims_per_cycle, depth=cfg.beats_per_key + SCORE_LATENCY + 4)
        word = data.ArrayLayout(signed(8), cfg.dims_per_cycle)
        queries = [[Signal(word, name=f"q{lane}_{b}") for b in range(cfg.beats_per_key)]
                   for lane in range(cfg.lanes)]
        sums = [[Signal(data.ArrayLayout(signed(ACC_WIDTH), cfg.dims_per_cycle),
                        name=f"o{lane}_{b}") for b in range(cfg.beats_per_key)]
                for lane in range(cfg.lanes)]
        totals = [Signal(SUM_WIDTH, name=f"l{lane}") for lane in range(cfg.lanes)]

        # Registered stream outputs drop valid once taken, whatever the phase.
        for source in (scores.jobs, self.results):
            with m.If(source.ready):
                m.d.sync += source.valid.eq(0)
        with m.FSM():
            with m.State("load"):
                with m.If(self._load(m, scores, queries)):
                    m.next = "run"
            with m.State("run"):
                keys_ended = self._dot_stage(m, scores, values, queries)
                with m.If(self._value_stage(m, scores, values, sums, totals)):
                    m.d.sync += keys_ended.eq(0)
                    m.next = "finish"
            with m.State("finish"):
                with m.If(self._finish(m, scores.lane_used, sums, totals)):
                    m.d.sync += scores.lane_used.eq(0)
                    m.next = "load"
        return m

    def _load(self, m, scores, queries):
        """Take query beats into lanes; true on the block's final query."""
        cfg = self._config
        count = Signal(range(cfg.lanes), name="loaded")
        query = self.queries.payload
        done = Signal()
        m.d.comb += [self.queries.ready.eq(1),
                     done.eq(self.queries.valid & (query.last | (count == cfg.lanes - 1)))]
        with m.If(self.queries.valid):
            m.d.sync += count.eq(Mux(done, 0, count + 1))
            sq = scale_mul(m, query.scale, self.score_scale, name="query_sq")
            for lane in range(cfg.lanes):
                with m.If(count == lane):
                    m.d.sync += [scores.lane_sq[lane].eq(sq),
                                 scores.lane_position[lane].eq(query.position),
                                 scores.lane_used[lane].eq(1)]
                    for b, held in enumerate(queries[lane]):
                        m.d.sync += held.eq(query.codes.as_value().word_select(
                            b, len(held.as_value())))
        return done

    def _dot_stage(self, m, scores, values, queries):
        """Stage A: per key, each lane's dot product over its beats; values to the FIFO.
        Returns the flag that holds further keys once the pass's last beat is in."""
        cfg = self._config
        beat = Signal(range(cfg.beats_per_key), name="dot_beat")
        partial = [Signal(signed(DOT_WIDTH), name=f"dot{lane}") for lane in range(cfg.lanes)]
        key = self.keys.payload
        job = scores.jobs
        final = beat == cfg.beats_per_key - 1
        totals = [Mux(beat == 0, 0, partial[lane]) + sum(
                      queries[lane][0][dim] * key.k[dim] for dim in range(cfg.dims_per_cycle))
                  for lane in range(cfg.lanes)]
        # The pass ends with its `last` beat; the next pass's keys wait for the next block.
        ended = Signal(name="keys_ended")
        take = Signal()
        m.d.comb += [take.eq(self.keys.valid & ~ended & values.w_rdy &
                             (~final | ~job.valid | job.ready)),
                     self.keys.ready.eq(take),
                     values.w_en.eq(take), values.w_data.eq(key.v)]
        with m.If(take):
            m.d.sync += beat.eq(Mux(final, 0, beat + 1))
            for lane in range(cfg.lanes):
                ring = queries[lane]
                _rotate(m, ring)
                m.d.sync += partial[lane].eq(totals[lane])
            with m.If(key.last):
                m.d.sync += ended.eq(1)
            with m.If(final):
                m.d.sync += [job.payload.dot[lane].eq(total) for lane, total in enumerate(totals)]
                m.d.sync += [job.valid.eq(1), job.payload.k_scale.eq(key.k_scale),
                             job.payload.v_scale.eq(key.v_scale),
                             job.payload.index.eq(key.index), job.payload.last.eq(key.last)]
        return ended

    def _value_stage(self, m, scores, values, sums, totals):
        """Stage C: apply each key's update to l and o, one value beat per cycle;
        true when the pass's final key is applied."""
        cfg = self._config
        beat = Signal(range(cfg.beats_per_key), name="value_beat")
        update = scores.updates.payload
        final = beat == cfg.beats_per_key - 1
        fire = Signal()
        m.d.comb += [fire.eq(scores.updates.valid & values.r_rdy),
                     values.r_en.eq(fire), scores.updates.ready.eq(fire & final)]
        v = data.ArrayLayout(signed(8), cfg.dims_per_cycle)(values.r_data)
        with m.If(fire):
            m.d.sync += beat.eq(Mux(final, 0, beat + 1))
            for lane in range(cfg.lanes):
                state = update.lanes[lane]
                ring = sums[lane]
                _rotate(m, ring)
                with m.If(state.active):
                    for dim in range(cfg.dims_per_cycle):
                        kept = Mux(state.first, 0, shift_round(ring[0][dim], state.rescale))
                        m.d.sync += ring[-1][dim].eq(kept + state.weight * v[dim])
                    with m.If(beat == 0):
                        kept = Mux(state.first, 0, shift_round(totals[lane], state.rescale))
                        m.d.sync += totals[lane].eq(kept + state.prob)
        return fire & final & update.last

    def _finish(self, m, used, sums, totals):
        """Emit each loaded lane's normalised output; true after the block's last beat."""
        cfg = self._config
        lane = Signal(range(cfg.lanes), name="finish_lane")
        beat = Signal(range(cfg.beats_per_key), name="finish_beat")
        wait = Signal(range(RECIPROCAL_LATENCY + 1), name="finish_wait")
        inverse = reciprocal(m, 127 * Array(totals)[lane], 1, name="normaliser")
        heads = sums[0][0].shape()(Array(ring[0].as_value() for ring in sums)[lane])
        shift = Signal(7, name="finish_shift")
        m.d.comb += shift.eq(-(inverse.e + 15))       # >= 21: l >= 2**14 (numerics 6)
        out = self.results
        last_lane = (lane == cfg.lanes - 1) | ~(used >> (lane + 1)).any()
        final = beat == cfg.beats_per_key - 1
        emit = Signal()
        m.d.comb += emit.eq((wait == RECIPROCAL_LATENCY) & (~out.valid | out.ready))
        with m.If(wait != RECIPROCAL_LATENCY):
            m.d.sync += wait.eq(wait + 1)
        with m.If(emit):
            m.d.sync += [out.valid.eq(1), out.payload.last.eq(final & last_lane),
                         beat.eq(Mux(final, 0, beat + 1))]
            for dim in range(cfg.dims_per_cycle):
                value = shift_round(heads[dim] * inverse.m, shift, max_shift=81)
                m.d.sync += out.payload.values[dim].eq(saturate(value))
            for index, ring in enumerate(sums):
                with m.If(lane == index):
                    _rotate(m, ring)
            with m.If(final):
                m.d.sync += [wait.eq(0), lane.eq(Mux(last_lane, 0, lane + 1))]
        return emit & final & last_lane



def _rotate(m, ring):
    """Shift a ring of registers by one word: the head moves to the back."""
    m.d.sync += [held.eq(after) for held, after in zip(ring, ring[1:] + ring[:1])]
