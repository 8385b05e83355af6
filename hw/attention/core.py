"""The attention core: a block of query lanes against one pass over the KV cache.

Every path is pipelined to carry at most one multiplier, wide carry chain, barrel
shifter or block-RAM read (docs/timing.md); the latencies are the constants below and
the functions of the config that name them, never literals in the testbenches.
"""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import AttentionConfig
from ..fixedpoint import (NORMALIZE_LATENCY, RECIPROCAL_LATENCY, Pipeline, QueuedPipeline,
                          delay, exp2_table, normalize_scale_staged, reciprocal, saturate,
                          scale_layout)
from ..layouts import (attention_query_layout, attention_result_layout, key_beat_layout,
                       position_shape)
from ..numerics import F_SCORE
from ..staged import product_latency, round_latency, staged_product, staged_round
from ..stream import Handshake

__all__ = ["AttentionCore", "SCORE_LATENCY", "FINISH_WAIT", "dot_latency", "acc_width",
           "finish_latency", "ring_stages", "value_fifo_depth"]

DOT_WIDTH = 24                  # |q . k| <= 128 * 128 * 256 < 2**23 for head_dim <= 256
SUM_WIDTH = 48                  # l <= 2**15 * context
MAX_RESCALE = 63                # a rescale shift this large already clears every o and l
FACTOR_WIDTH = 32               # q_scale.m * k_scale.m

_SCORE_PRODUCT = product_latency(signed(DOT_WIDTH), unsigned(FACTOR_WIDTH))
_WEIGHT_PRODUCT = product_latency(unsigned(16), unsigned(16))
# Register stages of the score pipeline (ScoreUnit), in order: the scale product; the
# dot times scale product; its shift and rounding; saturation; the ceiling; the running
# maximum (the recurrence, one stage); the rescale and the distance below the maximum;
# the exponential table read and its data held; its shift and rounding; the value
# weight's product, shift and rounding.
SCORE_LATENCY = (1 + _SCORE_PRODUCT + round_latency() + 1 + 1 + 1 + 1 + 2
                 + round_latency() + _WEIGHT_PRODUCT + round_latency())
# Cycles from a lane's turn in the finish phase to its normaliser being ready: the lane's
# ``l`` selected and registered, ``127 l`` (a shift and a subtraction) registered, then
# the reciprocal.
FINISH_WAIT = 2 + RECIPROCAL_LATENCY


def dot_latency(config: AttentionConfig) -> int:
    """Register stages between a key beat taken and its partial dot products reaching the
    accumulator: the products, then one per level of the adder tree over the beat."""
    return 1 + (config.dims_per_cycle - 1).bit_length()


def acc_width(config: AttentionConfig) -> int:
    """Bits of a signed ``o`` word: ``|o| <= 2^23 l`` and ``l <= 2^15 context``
    (docs/numerics.md section 6), so every context up to the cache's capacity fits
    exactly (51 bits at 2,048 positions, 56 at 2^16). Each dimension's word takes a
    rescale shift and two adds every cycle, so its width is most of a lane's LUTs."""
    return (2 ** 38 * config.capacity).bit_length() + 1


def _finish_product(config: AttentionConfig) -> int:
    """Register stages of the output's product, an ``o`` word times the normaliser."""
    return product_latency(signed(acc_width(config)), unsigned(16))


def finish_latency(config: AttentionConfig) -> int:
    """Register stages of the output: the word selected, the product with the
    normaliser, its shift and rounding, saturation."""
    return 1 + _finish_product(config) + round_latency() + 1


def value_fifo_depth(config: AttentionConfig) -> int:
    """Beats the value FIFO holds: a key's own, and one for each cycle a key spends
    between its first beat taken and its update reaching the value stage (the dot
    pipeline, the score pipeline, the update queue), plus slack; so the intake never
    waits for the value stage in a pass (a key every ``beats_per_key`` cycles)."""
    return 2 * config.beats_per_key + dot_latency(config) + SCORE_LATENCY + 4


def ring_stages(config: AttentionConfig) -> int:
    """Pipeline registers inside each lane's ring of ``o`` words (0 to 2): the rescale
    shift, its rounding, and the weighted add each get a stage where the ring has the
    words to spare (a word comes back every ``beats_per_key`` cycles)."""
    return min(2, config.beats_per_key - 1)


def _score_job_layout(config: AttentionConfig):
    lanes = config.lanes
    return data.StructLayout({
        "dot": data.ArrayLayout(signed(DOT_WIDTH), lanes), "k_scale": scale_layout,
        "v_scale": scale_layout, "index": position_shape(config), "bank": unsigned(1),
        "last": unsigned(1)})


def _block_layout(config: AttentionConfig):
    """A loaded block as the score unit reads it, per lane: ``q_scale * score_scale``,
    the query's position, and whether the lane holds a query."""
    return data.StructLayout({
        "sq": data.ArrayLayout(scale_layout, config.lanes),
        "position": data.ArrayLayout(position_shape(config), config.lanes),
        "used": unsigned(config.lanes)})


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
        Dot products of one key with every lane's query, with the key's scales and the
        bank of the block it belongs to.
    updates : ``Out(stream.Signature(update))``
    blocks : ``In(ArrayLayout(block, 2))``
        Two banks of loaded blocks (``q_scale * score_scale``, the query positions,
        which lanes hold a query); a key reads its own block's, so the next block loads
        while the last keys of the one before are still in the pipeline. A bank is
        stable while keys of its block flow.
    """

    def __init__(self, config: AttentionConfig):
        self._config = config
        super().__init__({
            "jobs": In(stream.Signature(_score_job_layout(config))),
            "updates": Out(stream.Signature(_update_layout(config))),
            "blocks": In(data.ArrayLayout(_block_layout(config), 2)),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.jobs, self.updates, SCORE_LATENCY)
        job = self.jobs.payload
        exp_rom = Memory(shape=unsigned(16), depth=256, init=exp2_table())
        m.submodules.exp2 = exp_rom
        # The stage at which the running maximum is updated, and what rides to it: the
        # key's index and its block, whose positions and used lanes the stage before
        # the maximum reads (the scale products read the block as the job enters).
        at_max = 1 + _SCORE_PRODUCT + round_latency() + 3
        index = delay(m, job.index, at_max - 2, pipe.advance, "index")
        late = self.blocks[delay(m, job.bank, at_max - 2, pipe.advance, "bank")]
        weight_at = SCORE_LATENCY - _WEIGHT_PRODUCT - round_latency()
        v_scale = delay(m, job.v_scale, weight_at, pipe.advance, "v_scale")
        m.d.comb += self.updates.payload.last.eq(
            delay(m, job.last, SCORE_LATENCY, pipe.advance, "last"))
        block = self.blocks[job.bank]
        for lane in range(self._config.lanes):
            self._lane(m, pipe, lane, job, block, index, late, v_scale, exp_rom.read_port(),
                       at_max)
        return m

    def _lane(self, m, pipe, lane, job, block, index, late, v_scale, exp_port, at_max):
        """One lane's stages; ``block`` is the entering key's block, ``index`` and
        ``late`` the key's index and block entering stage ``at_max - 1``, ``v_scale``
        its value scale entering the weight product."""
        go = pipe.advance
        out = self.updates.payload.lanes[lane]
        sq = block.sq[lane]
        reg = lambda shape, name: Signal(shape, name=f"lane{lane}_{name}")

        # The score: S = sat32(shift_round(dot * (q_scale.m * k_scale.m), -e - F)).
        factor = staged_product(m, sq.m, job.k_scale.m, go, f"lane{lane}_factor")
        dot = delay(m, job.dot[lane], 1, go, f"lane{lane}_dot")
        exponent = delay(m, sq.e + job.k_scale.e, 1, go, f"lane{lane}_exponent")
        product = staged_product(m, dot, factor, go, f"lane{lane}_score_product")
        # The shift, formed from the registered exponent the stage after it.
        shift = delay(m, -exponent - F_SCORE, _SCORE_PRODUCT, go, f"lane{lane}_shift")
        rounded = staged_round(m, product, shift, go, f"lane{lane}_score", max_left=4)
        score = reg(signed(32), "score")
        ceiling, score_c = reg(signed(25), "ceiling"), reg(signed(32), "score_c")
        active, first = reg(1, "active"), reg(1, "first")
        with m.If(go):
            m.d.sync += [
                score.eq(saturate(rounded)),
                ceiling.eq((score + (1 << F_SCORE) - 1) >> F_SCORE), score_c.eq(score),
                active.eq(late.used[lane] & (index <= late.position[lane])),
                first.eq(index == 0),
            ]

        # The running maximum: the recurrence, alone in its stage.
        running_max, before = reg(signed(25), "max"), reg(signed(25), "max_before")
        new_max, score_m = reg(signed(25), "new_max"), reg(signed(32), "score_m")
        active_m, first_m = reg(1, "active_m"), reg(1, "first_m")
        higher = Signal(signed(25), name=f"lane{lane}_higher")
        m.d.comb += higher.eq(Mux(first, ceiling,
                                  Mux(running_max > ceiling, running_max, ceiling)))
        with m.If(go):
            m.d.sync += [new_max.eq(higher), before.eq(running_max), score_m.eq(score_c),
                         active_m.eq(active), first_m.eq(first)]
            with m.If(pipe.valid[at_max - 1] & active):
                m.d.sync += running_max.eq(higher)

        # The rescale and the distance below the maximum; the table read.
        step = Signal(signed(26), name=f"lane{lane}_step")
        m.d.comb += step.eq(new_max - before)
        rescale, distance = reg(6, "rescale"), reg(34, "distance")
        with m.If(go):
            # Only a key that is not the lane's first uses the rescale: there the
            # maximum never falls, so the step is never negative.
            m.d.sync += [rescale.eq(Mux(step[6:].any(), MAX_RESCALE, step[:6])),
                         distance.eq((new_max << F_SCORE) - score_m)]
        m.d.comb += [exp_port.en.eq(go), exp_port.addr.eq(distance[:F_SCORE])]
        # Stage by stage to the table data: the flags from the maximum's stage, the
        # rescale from the one after.
        flags = [delay(m, value, 3, go, f"lane{lane}_{name}_t")
                 for name, value in (("active", active_m), ("first", first_m))]
        flags.append(delay(m, rescale, 2, go, f"lane{lane}_rescale_t"))
        exp_value = delay(m, exp_port.data, 1, go, f"lane{lane}_exp")
        exp_shift = delay(m, distance[F_SCORE:], 2, go, f"lane{lane}_exp_shift")

        # P = E[distance & 255] >> (distance >> 8), rounded; W = P * absmax(v), Q.12.
        prob = staged_round(m, exp_value, exp_shift, go, f"lane{lane}_prob", max_right=17)
        weight_product = staged_product(m, prob[:16], v_scale.m, go, f"lane{lane}_weight")
        weight_shift = delay(m, 15 - v_scale.e, _WEIGHT_PRODUCT, go,
                             f"lane{lane}_weight_shift")
        weight = staged_round(m, weight_product, weight_shift, go, f"lane{lane}_weight",
                              max_left=1, max_right=34)
        tail = _WEIGHT_PRODUCT + round_latency()
        flags = [delay(m, value, round_latency() + tail, go, f"lane{lane}_flag{k}_")
                 for k, value in enumerate(flags)]
        m.d.comb += [out.active.eq(flags[0]), out.first.eq(flags[1]), out.rescale.eq(flags[2]),
                     out.prob.eq(delay(m, prob[:16], tail, go, f"lane{lane}_prob_")),
                     out.weight.eq(weight)]


class AttentionCore(wiring.Component):
    """Up to ``lanes`` query heads against one ascending pass over their kv head's cache.

    A block runs in three phases, and each block's phases overlap the next block's:

    1. **load**: ``queries`` beats fill the lanes, one query head each, until ``last``
       or until every lane is full;
    2. **run**: ``keys`` beats stream keys 0, 1, ... in ascending order,
       ``dims_per_cycle`` dimensions per beat, until a beat with ``last``. Each lane
       keeps the online-softmax state of docs/numerics.md section 6 (running maximum,
       probability sum ``l``, accumulator ``o``) and skips keys after its query's
       position, so one pass serves queries of different positions (causal prefill)
       and different heads of one kv head (grouped-query attention);
    3. **finish**: once the pass's last key is applied, its ``o`` words are copied out
       of the lanes' rings (``beats_per_key`` cycles: the capture) and each loaded
       lane's ``o / (127 l)`` leaves on ``results``, ``io_lanes`` dimensions per beat,
       lanes in load order, ``last`` on the block's final beat. The finish is as wide
       as the unit's vectors rather than the core's beats: its products, roundings and
       saturations, most of a dimension's logic after the ring, are not repeated for
       the dimensions a wide core adds.

    The next block loads as soon as the current block's last key is in (its queries
    replace the current ones once no key needs them; the score unit reads each key's
    own block from one of two banks), and its keys follow the current block's through
    the pipeline; the capture then runs between the two blocks' value updates, and the
    finish while the next block runs. So a block costs its keys and its load, not the
    pipeline's latency and the finish (docs/attention.md, "Passes"). At most two
    blocks are loaded and not yet captured: a bank is reloaded only once its block is
    captured.

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
            width=8 * cfg.dims_per_cycle, depth=value_fifo_depth(cfg))
        # Updates wait here for the value stage. This queue never fills: an update
        # leaves it with its key's final value beat, so every update in it still has
        # beats in the value FIFO (all of its key's beats, but for the head), and it
        # holds value_fifo_depth / beats_per_key + 1. So the score pipeline takes no ready from
        # it: the score pipeline's and the dot stage's enables are constant, and no
        # ready runs from the value stage back to the key intake.
        update_layout = _update_layout(cfg)
        m.submodules.updates = updates = SyncFIFOBuffered(
            width=update_layout.size, depth=-(-value_fifo_depth(cfg) // cfg.beats_per_key) + 1)
        update = stream.Signature(update_layout).create(path=("update",))
        m.d.comb += [updates.w_data.eq(scores.updates.payload), updates.w_en.eq(scores.updates.valid),
                     scores.updates.ready.eq(1),
                     update.payload.eq(updates.r_data), update.valid.eq(updates.r_rdy),
                     updates.r_en.eq(update.ready)]
        word = data.ArrayLayout(signed(8), cfg.dims_per_cycle)
        queries = [[Signal(word, name=f"q{lane}_{b}", reset_less=True)
                     for b in range(cfg.beats_per_key)]
                   for lane in range(cfg.lanes)]
        totals = [Signal(SUM_WIDTH, name=f"l{lane}") for lane in range(cfg.lanes)]

        # The job register drops valid once taken, whatever the phase.
        with m.If(scores.jobs.ready):
            m.d.sync += scores.jobs.valid.eq(0)
        fire = Signal()                         # the value stage takes a value beat
        capture = Signal()                      # the rings turn for the capture
        heads = [self._ring(m, lane, update.payload.lanes[lane], values, fire, fire | capture)
                 for lane in range(cfg.lanes)]
        # The load and the run alternate; the capture and the finish follow each block
        # on their own, and every pipeline keeps moving.
        loading, running = Signal(), Signal()
        captured = Signal()                     # a block's words leave the rings
        loaded, scaling, bank = self._load(m, scores, queries, loading, captured)
        keys_ended = self._dot_stage(m, scores, values, queries, running & ~scaling, bank)
        applied, hold = Signal(), Signal()
        m.d.comb += applied.eq(self._value_stage(m, update, values, fire, totals, hold))
        busy, read = Signal(), Signal(cfg.lanes)   # the finish holds a block; its reads
        snapshots = self._capture(m, heads, applied, capture, captured, hold, busy, read)
        self._finish(m, scores.blocks, snapshots, totals, captured, busy, read)
        with m.FSM():
            with m.State("load"):
                m.d.comb += loading.eq(1)
                with m.If(loaded):
                    m.d.sync += keys_ended.eq(0)
                    m.next = "run"
            with m.State("run"):
                m.d.comb += running.eq(1)
                with m.If(keys_ended):
                    m.next = "load"
        return m

    def _load(self, m, scores, queries, loading, captured):
        """Take query beats into lanes while ``loading`` and a bank is free; true on the
        block's final query. A lane's ``q_scale * score_scale`` follows its query by the
        product's and the normaliser's stages; returns also whether any is still on its
        way (the keys wait for it) and the bank of the block the keys belong to.

        A block loads into the bank the block before the last one used, once that
        block is ``captured`` (at most two blocks loaded and not yet captured)."""
        cfg = self._config
        count = Signal(range(cfg.lanes), name="loaded")
        bank, run_bank = Signal(name="load_bank"), Signal(name="run_bank")
        # Blocks loaded and not yet captured: the one running and the one before it.
        open_blocks = Signal(range(3), name="open_blocks")
        query = self.queries.payload
        take, done = Signal(), Signal()
        m.d.comb += [self.queries.ready.eq(loading & (open_blocks < 2)),
                     take.eq(self.queries.valid & self.queries.ready),
                     done.eq(take & (query.last | (count == cfg.lanes - 1)))]
        m.d.sync += open_blocks.eq(open_blocks + done - captured)
        with m.If(done):
            m.d.sync += [bank.eq(~bank), run_bank.eq(bank)]
        product = Signal(32, name="query_sq_product")
        exponent = Signal(signed(12), name="query_sq_exponent")
        m.d.sync += [product.eq(query.scale.m * self.score_scale.m),
                     exponent.eq(query.scale.e + self.score_scale.e)]
        sq = normalize_scale_staged(m, product, exponent, 1, name="query_sq")
        on_the_way = [take]
        for stage in range(1, 2 + NORMALIZE_LATENCY):
            on_the_way.append(delay(m, on_the_way[-1], 1, 1, f"query_sq_valid{stage}_",
                                    reset_less=False))
        lane_at = delay(m, count, 1 + NORMALIZE_LATENCY, 1, "query_sq_lane")
        bank_at = delay(m, bank, 1 + NORMALIZE_LATENCY, 1, "query_sq_bank")
        for index, block in enumerate(scores.blocks):
            for lane in range(cfg.lanes):
                with m.If(on_the_way[-1] & (lane_at == lane) & (bank_at == index)):
                    m.d.sync += block.sq[lane].eq(sq)
            with m.If(take & (bank == index)):
                for lane in range(cfg.lanes):
                    with m.If(count == lane):
                        m.d.sync += block.position[lane].eq(query.position)
                        # The block's first query clears what the bank's last block used.
                        m.d.sync += (block.used.eq(1) if lane == 0 else block.used[lane].eq(1))
        with m.If(take):
            m.d.sync += count.eq(Mux(done, 0, count + 1))
            for lane in range(cfg.lanes):
                with m.If(count == lane):
                    for b, held in enumerate(queries[lane]):
                        m.d.sync += held.eq(query.codes.as_value().word_select(
                            b, len(held.as_value())))
        pending = Signal(name="query_sq_pending")
        m.d.comb += pending.eq(Cat(*on_the_way[1:]).any())
        return done, pending, run_bank

    def _dot_stage(self, m, scores, values, queries, running, bank):
        """Stage A: per key, each lane's dot product over its beats; values to the FIFO.
        A beat's products, then each level of their adder tree, get a register stage
        (:func:`dot_latency`); the accumulator holds a key's final beat until the
        score unit can take the key, with the ``bank`` of its block. Returns the flag
        that holds further keys once the pass's last beat is in."""
        cfg = self._config
        latency = dot_latency(cfg)
        beat = Signal(range(cfg.beats_per_key), name="dot_beat")
        key = self.keys.payload
        job = scores.jobs
        final = beat == cfg.beats_per_key - 1
        # The pass ends with its `last` beat; the next pass's keys wait for the next block.
        ended = Signal(name="keys_ended")
        intake, sums = Handshake("dot_intake"), Handshake("dot_sums")
        pipe = Pipeline(m, intake, sums, latency)
        m.d.comb += [intake.valid.eq(running & self.keys.valid & ~ended & values.w_rdy),
                     self.keys.ready.eq(pipe.accept),
                     values.w_en.eq(pipe.accept), values.w_data.eq(key.v)]
        with m.If(pipe.accept):
            m.d.sync += beat.eq(Mux(final, 0, beat + 1))
            for ring in queries:
                _rotate(m, ring, 1)
            with m.If(key.last):
                m.d.sync += ended.eq(1)

        go = pipe.advance
        fields = {"first": beat == 0, "final": final, "k_scale": key.k_scale,
                  "v_scale": key.v_scale, "index": key.index, "bank": bank, "last": key.last}
        at_sums = {name: delay(m, value, latency, go, f"dot_{name}")
                   for name, value in fields.items()}
        partial = [Signal(signed(DOT_WIDTH), name=f"dot{lane}") for lane in range(cfg.lanes)]
        totals = []
        for lane in range(cfg.lanes):
            terms = [delay(m, queries[lane][0][dim] * key.k[dim], 1, go,
                           f"dot{lane}_product{dim}_")
                     for dim in range(cfg.dims_per_cycle)]
            level = 0
            while len(terms) > 1:
                level += 1
                pairs = [a + b for a, b in zip(terms[::2], terms[1::2])]
                terms = [delay(m, value, 1, go, f"dot{lane}_level{level}_{k}_")
                         for k, value in enumerate(pairs + terms[len(pairs) * 2:])]
            totals.append(Mux(at_sums["first"], 0, partial[lane]) + terms[0])

        m.d.comb += sums.ready.eq(~at_sums["final"] | ~job.valid | job.ready)
        with m.If(sums.transfer):
            m.d.sync += [held.eq(total) for held, total in zip(partial, totals)]
            with m.If(at_sums["final"]):
                m.d.sync += [job.payload.dot[lane].eq(total) for lane, total in enumerate(totals)]
                m.d.sync += [job.valid.eq(1), job.payload.k_scale.eq(at_sums["k_scale"]),
                             job.payload.v_scale.eq(at_sums["v_scale"]),
                             job.payload.index.eq(at_sums["index"]),
                             job.payload.bank.eq(at_sums["bank"]),
                             job.payload.last.eq(at_sums["last"])]
        return ended

    def _ring(self, m, lane, state, values, fire, rotate):
        """The lane's ``o`` accumulator: ``beats_per_key`` words in a ring that moves one
        word under ``rotate``; the word leaving the head is updated on its way to the
        tail by the key's state when ``fire`` (a value beat), and passes unchanged
        otherwise (the capture copying the ring out). The update,
        ``(first ? 0 : shift_round(o, rescale)) + weight * v``, runs over
        :func:`ring_stages` registers inside the ring.

        The stored words are a LUT RAM with a read pointer at the head: a rotation
        writes the tail's word where the head was and moves the pointer, so the ring's
        words need no flip-flops and its enable reaches a write port and a few stage
        registers rather than every bit of every word. Returns the head word: after a
        key's last beat, the next ``beats_per_key`` rotations present the key's words
        at the head in order, fully updated."""
        cfg = self._config
        inside = ring_stages(cfg)
        word = data.ArrayLayout(signed(acc_width(cfg)), cfg.dims_per_cycle)
        stored = cfg.beats_per_key - inside
        memory = m.submodules[f"o{lane}"] = Memory(shape=word, depth=stored, init=[])
        pointer = Signal(range(stored), name=f"o{lane}_head")
        head_port = memory.read_port(domain="comb")
        m.d.comb += head_port.addr.eq(pointer)
        head = head_port.data
        v = data.ArrayLayout(signed(8), cfg.dims_per_cycle)(values.r_data)
        active = state.active & fire
        rounds = active & ~state.first & (state.rescale != 0)

        def stage(values, name):
            """Register ``values`` (a dict) as one ring stage, if the ring has one left."""
            nonlocal inside
            if not inside:
                return values
            inside -= 1
            held = {key: Signal.like(value, name=f"o{lane}_{name}_{key}", reset_less=True)
                    for key, value in values.items()}
            with m.If(rotate):
                m.d.sync += [held[key].eq(value) for key, value in values.items()]
            return held

        # 1: shift right by rescale - 1 (keeping the rounding bit); the weighted value.
        first = {"zero": active & state.first, "rounds": rounds, "add": active}
        for dim in range(cfg.dims_per_cycle):
            first[f"t{dim}"] = Mux(rounds, head[dim] >> (state.rescale - 1)[:6], head[dim])
            first[f"p{dim}"] = state.weight * v[dim]
        second = stage(first, "shifted")
        # 2: the rounding add; 3: the weighted add.
        kept = {key: value for key, value in second.items() if key[0] in "pa"}
        for dim in range(cfg.dims_per_cycle):
            t = second[f"t{dim}"]
            kept[f"k{dim}"] = Mux(second["zero"], 0, Mux(second["rounds"], (t + 1) >> 1, t))
        third = stage(kept, "kept")
        updated = [Mux(third["add"], third[f"k{dim}"] + third[f"p{dim}"], third[f"k{dim}"])
                   for dim in range(cfg.dims_per_cycle)]
        tail = memory.write_port()
        m.d.comb += [tail.addr.eq(pointer), tail.en.eq(rotate)]
        m.d.comb += [tail.data[dim].eq(value) for dim, value in enumerate(updated)]
        with m.If(rotate):
            m.d.sync += pointer.eq(Mux(pointer == stored - 1, 0, pointer + 1))
        return head

    def _value_stage(self, m, update_stream, values, fire, totals, hold):
        """Stage C: each value beat moves the lanes' rings (:meth:`_ring`); each key
        updates ``l`` over its first beats; true when the pass's final key is applied.
        Nothing moves while ``hold`` (a block's words wait for the capture)."""
        cfg = self._config
        beat = Signal(range(cfg.beats_per_key), name="value_beat")
        update = update_stream.payload
        final = beat == cfg.beats_per_key - 1
        m.d.comb += [fire.eq(~hold & update_stream.valid & values.r_rdy),
                     values.r_en.eq(fire), update_stream.ready.eq(fire & final)]
        with m.If(fire):
            m.d.sync += beat.eq(Mux(final, 0, beat + 1))
        inside = ring_stages(cfg)
        for lane in range(cfg.lanes):
            self._total(m, lane, update.lanes[lane], totals[lane], fire, beat, inside)
        return fire & final & update.last

    @staticmethod
    def _total(m, lane, state, total, fire, beat, inside):
        """``l = (first ? 0 : shift_round(l, rescale)) + prob`` for an active lane, as the
        ring's update: the shift on the key's beat 0, the rounding and the add on the
        next beats while the ring has stages (the key's state holds for all its beats)."""
        rounds = ~state.first & (state.rescale != 0)
        shifted = Mux(rounds, total >> (state.rescale - 1)[:6], total)
        if inside:
            held = Signal.like(total, name=f"l{lane}_shifted")
            with m.If(fire & (beat == 0)):
                m.d.sync += held.eq(shifted)
            shifted = held
        kept = Mux(state.first, 0, Mux(rounds, (shifted + 1) >> 1, shifted))
        if inside > 1:
            held = Signal.like(total, name=f"l{lane}_kept")
            with m.If(fire & (beat == 1)):
                m.d.sync += held.eq(kept)
            kept = held
        with m.If(fire & (beat == inside) & state.active):
            m.d.sync += total.eq(kept + state.prob)

    def _capture(self, m, heads, applied, capture, captured, hold, busy, read):
        """Copy each block's ``o`` words out of the rings once its last key is
        ``applied``: ``beats_per_key`` turns of the rings with no update (``capture``),
        each shifting every lane's head word into the lane's snapshot, as soon as the
        finish is done with the block before (``busy``); ``captured`` on the last turn.
        Value beats ``hold`` from the block's last key to its last word captured: the
        next block's keys would update the words first. ``read`` (a bit per lane) shifts
        a lane's snapshot by a word for the finish. Returns each lane's snapshot, its
        first word first.

        Every word of a snapshot takes either the next word or, the last, the ring's
        head: a shift register with an enable and no multiplexer."""
        cfg = self._config
        left = Signal(range(cfg.beats_per_key + 1), name="capture_left")
        m.d.comb += [hold.eq(left != 0), capture.eq(hold & ~busy),
                     captured.eq(capture & (left == 1))]
        with m.If(applied):
            m.d.sync += left.eq(cfg.beats_per_key)
        with m.If(capture):
            m.d.sync += left.eq(left - 1)
        word = data.ArrayLayout(signed(acc_width(cfg)), cfg.dims_per_cycle)
        snapshots = []
        for lane, head in enumerate(heads):
            words = [Signal(word, name=f"o{lane}_copy{k}", reset_less=True)
                     for k in range(cfg.beats_per_key)]
            with m.If(capture | read[lane]):
                m.d.sync += [held.eq(after) for held, after in zip(words, words[1:] + [head])]
            snapshots.append(words)
        return snapshots

    def _finish(self, m, blocks, snapshots, totals, captured, busy, read):
        """Emit each loaded lane's normalised output from a ``captured`` block's
        snapshots, its ``l`` and used lanes held when it is captured; ``busy`` until
        the block's last beat is in the output pipeline (:func:`finish_latency`)."""
        cfg = self._config
        lane = Signal(range(cfg.lanes), name="finish_lane")
        beat = Signal(range(cfg.io_beats_per_head), name="finish_beat")
        part = Signal(range(cfg.io_per_beat), name="finish_part")    # of the ring's word
        wait = Signal(range(FINISH_WAIT + 1), name="finish_wait")
        sums = [Signal(SUM_WIDTH, name=f"l{index}_copy") for index in range(cfg.lanes)]
        used = Signal(cfg.lanes, name="finish_used")
        bank = Signal(name="finish_bank")       # blocks are captured in load order
        with m.If(captured):
            m.d.sync += [busy.eq(1), used.eq(blocks[bank].used), bank.eq(~bank)]
            m.d.sync += [held.eq(total) for held, total in zip(sums, totals)]
        total = Signal(SUM_WIDTH, name="finish_l")
        scaled = Signal(SUM_WIDTH + 7, name="normaliser_in")
        m.d.sync += [total.eq(Array(sums)[lane]), scaled.eq((total << 7) - total)]
        inverse = reciprocal(m, scaled, 1, name="normaliser")
        last_lane = (lane == cfg.lanes - 1) | ~(used >> (lane + 1)).any()
        final = beat == cfg.io_beats_per_head - 1
        word_done = part == cfg.io_per_beat - 1
        issue = Handshake("finish_issue")
        # The finish stages move every cycle and a queue holds the results while the
        # consumer refuses, so the issue's ready (and the snapshot's shift it drives)
        # starts at flip-flops, not at the consumer.
        pipe = QueuedPipeline(m, issue, self.results, finish_latency(cfg), name="finish")
        m.d.comb += issue.valid.eq(busy & (wait == FINISH_WAIT))
        with m.If(busy & (wait != FINISH_WAIT)):
            m.d.sync += wait.eq(wait + 1)
        with m.If(pipe.accept):
            m.d.sync += [beat.eq(Mux(final, 0, beat + 1)),
                         part.eq(Mux(word_done, 0, part + 1))]
            with m.If(final):
                m.d.sync += [wait.eq(0), lane.eq(Mux(last_lane, 0, lane + 1))]
            with m.If(final & last_lane):
                m.d.sync += busy.eq(0)
        # A word whose last part is taken leaves its lane's snapshot.
        m.d.comb += [read[index].eq(pipe.accept & word_done & (lane == index))
                     for index in range(cfg.lanes)]
        word = Array(words[0].as_value() for words in snapshots)[lane]
        if cfg.io_per_beat > 1:
            word = word.word_select(part, acc_width(cfg) * cfg.io_lanes)
        self._output(m, pipe, pipe.payload, word, inverse, final & last_lane)

    def _output(self, m, pipe, out, head, inverse, last):
        """``sat32(shift_round(o * inverse.m, -(inverse.e + 15)))`` per dimension of an
        ``io_lanes`` part of a ring word, over :func:`finish_latency` stages; the shift is
        at least 21 (l >= 2**14, numerics 6)."""
        cfg = self._config
        go = pipe.advance
        word = data.ArrayLayout(signed(acc_width(cfg)), cfg.io_lanes)
        selected, mantissa = Signal(word, name="finish_word"), Signal(16, name="finish_m")
        shift, last1 = Signal(7, name="finish_shift"), Signal(name="finish_last")
        with m.If(go):
            m.d.sync += [selected.eq(head), mantissa.eq(inverse.m),
                         shift.eq(-(inverse.e + 15)), last1.eq(last)]
        shift_at = delay(m, shift, _finish_product(cfg), go, "finish_shift_")
        for dim in range(cfg.io_lanes):
            product = staged_product(m, selected[dim], mantissa, go, f"finish{dim}")
            value = staged_round(m, product, shift_at, go, f"finish{dim}", max_right=81)
            with m.If(go):
                m.d.sync += out.values[dim].eq(saturate(value))
        m.d.comb += out.last.eq(delay(m, last1, finish_latency(cfg) - 1, go, "finish_last_"))


def _rotate(m, ring, enable):
    """Shift a ring of registers by one word under ``enable``: the head moves to the back."""
    with m.If(enable):
        m.d.sync += [held.eq(after) for held, after in zip(ring, ring[1:] + ring[:1])]
