"""The attention block: from the QKV linear's output to the attention output.

Per job (a decode step, or a chunk of up to ``max_queries`` prompt tokens), the block

1. takes each token's head vectors (Q heads, then K heads, then V heads, int32 Q.12),
   rotates Q and K (:class:`~tritium.hw.elementwise.RoPE`), quantizes every head to
   int8 codes and a scale (:class:`~tritium.hw.elementwise.NormQuant`), keeps the
   queries in an on-chip query buffer and writes K and V into the KV cache;
2. once the cache holds the job's tokens, serves the queries in blocks of ``lanes``
   (query, head) pairs that share a kv head, in reversed token order, each block with
   one pass over keys ``0 .. p`` where ``p`` is the block's last position: the masked
   part of the cache is never read;
3. puts the outputs back in (token, head) order and streams them out, one token's
   ``heads * head_dim`` values per vector.

With ``rope_base`` (a design's ``rope_table = "memory"``), a job first reads its
positions' rows of RoPE's table from memory into RoPE's window
(:class:`~tritium.hw.attention.rope_window.RopeWindowLoader`).
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import (AcceleratorConfig, AttentionConfig, ElementwiseConfig, ModelConfig,
                      rope_row_pairs)
from ..elementwise import NormQuant, RoPE
from ..fixedpoint import scale_layout
from ..layouts import (attention_query_layout, layer_shape, position_shape, rope_row_layout,
                       vector_beat_layout)
from ..memory.mux import PortMux
from ..memory.port import MemoryConfig, MemoryPortSignature
from .core import AttentionCore
from .kvcache import KVLayout, KVReader, KVWriter
from .rope_window import RopeWindowLoader, check_row_width

__all__ = ["AttentionBlock", "attention_job_layout", "pass_blocks", "pass_key_counts"]


def attention_job_layout(config: AttentionConfig, max_queries: int) -> data.StructLayout:
    """One job: ``tokens`` (1 .. max_queries) new tokens from position ``start``."""
    return data.StructLayout({
        "layer": layer_shape(config),
        "start": position_shape(config),
        "tokens": unsigned(max_queries.bit_length()),
    })


def pass_blocks(config: AttentionConfig, start: int, tokens: int) -> list:
    """The blocks of a job as :meth:`AttentionBlock._schedule` forms them, as (keys read,
    queries) pairs: per kv head, (token, head) pairs from the last token to the first,
    ``lanes`` to a block, each block reading keys 0 .. its largest position (for
    benchmarks and the performance model)."""
    blocks = []
    for _ in range(config.kv_heads):
        positions = [start + t for t in reversed(range(tokens)) for _ in range(config.kv_group)]
        blocks += [(positions[i] + 1, len(positions[i:i + config.lanes]))
                   for i in range(0, len(positions), config.lanes)]
    return blocks


def pass_key_counts(config: AttentionConfig, start: int, tokens: int) -> list:
    """Keys read by each pass of a job (:func:`pass_blocks`)."""
    return [keys for keys, _ in pass_blocks(config, start, tokens)]


def _head_layout(config: AttentionConfig):
    """A quantized head: int8 codes and their scale."""
    return data.StructLayout({"codes": data.ArrayLayout(unsigned(8), config.head_dim),
                              "scale": scale_layout})


class AttentionBlock(wiring.Component):
    """RoPE, quantization, KV cache and attention for one layer's QKV output.

    Members
    -------
    job : ``In(stream.Signature(attention_job_layout))``
    qkv : ``In(stream.Signature(vector_beat_layout(io_lanes)))``
        Per token: ``heads`` Q, ``kv_heads`` K, then ``kv_heads`` V head vectors,
        ``last`` on each head's final beat.
    score_scale : ``In(scale_layout)``
    out : ``Out(stream.Signature(vector_beat_layout(io_lanes)))``
        Per token: every head's output, ``last`` on the token's final beat.
    memory : ``Out(MemoryPortSignature(memory))``
        The KV cache (``KVLayout(config, memory, kv_base, key_port_words)``) and, with
        ``rope_base``, RoPE's table (``rows`` words per position from that word address,
        one row a word: ``host/compiler.py`` ``rope_table_image``); None keeps the table
        in a ROM.
    key_memory : ``Out(MemoryPortSignature(memory.widened(key_port_words)))``
        Only with ``key_port_words`` > 1: the port the passes read the cache through, its
        words ``key_port_words`` bus words wide (a record may straddle two of them);
        the records are still written through ``memory``, and a pass starts only once
        they are acknowledged, so it reads them whatever port it uses.
    error : ``Out(1)``
        Sticky: a job asked for no tokens, more than ``max_queries``, or positions past
        the cache's capacity. Such a job is taken and dropped; the cache never wraps.
    """

    def __init__(self, model: ModelConfig, config: AttentionConfig, memory: MemoryConfig,
                 max_queries: int = 8, kv_base: int = 0, rope_base: int = None,
                 key_port_words: int = 1):
        config.check_model(model)
        if not isinstance(max_queries, int) or not 1 <= max_queries <= config.capacity:
            raise ValueError(f"max_queries must be 1..capacity ({config.capacity}), "
                             f"not {max_queries!r}")
        self._model, self._config, self._max_queries = model, config, max_queries
        key_memory = memory.widened(key_port_words)     # refuses a ratio not a power of two
        self._kv = KVLayout(config, memory, kv_base, key_port_words)
        self._kv.check()
        self._rope_base = rope_base
        if rope_base is not None:       # refused now rather than at elaboration
            check_row_width(rope_row_layout(rope_row_pairs(model, config.io_lanes)).size,
                            memory)
        beat = vector_beat_layout(config.io_lanes)
        super().__init__({
            "job": In(stream.Signature(attention_job_layout(config, max_queries))),
            "qkv": In(stream.Signature(beat)),
            "score_scale": In(scale_layout),
            "out": Out(stream.Signature(beat)),
            "memory": Out(MemoryPortSignature(memory)),
            **({"key_memory": Out(MemoryPortSignature(key_memory))}
               if key_port_words > 1 else {}),
            "error": Out(1),
        })

    @classmethod
    def of_design(cls, config: AcceleratorConfig) -> "AttentionBlock":
        """The block an accelerator design has: its model, units and memory map."""
        return cls(config.model, config.attention, config.memory, max_queries=config.max_tokens,
                   kv_base=config.kv_base, rope_base=config.rope_memory_base,
                   key_port_words=config.kv_port_words)

    @property
    def config(self) -> AttentionConfig:
        return self._config

    @property
    def kv_layout(self) -> KVLayout:
        return self._kv

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        lanes = cfg.io_lanes
        quant_config = ElementwiseConfig(lanes=lanes, max_features=cfg.head_dim)
        window = None if self._rope_base is None else self._max_queries
        m.submodules.rope = rope = RoPE(self._model, lanes, window)
        m.submodules.qk_quant = qk_quant = NormQuant(quant_config, gain=False,
                                                     ram_role="attention_quant")
        m.submodules.v_quant = v_quant = NormQuant(quant_config, gain=False,
                                                   ram_role="attention_quant")
        m.submodules.writer = writer = KVWriter(self._kv)
        # The reader reads the records in the words of the port it reads them through.
        m.submodules.reader = reader = KVReader(self._kv)
        m.submodules.core = core = AttentionCore(cfg)
        m.submodules.k_heads = k_heads = SyncFIFOBuffered(
            width=_head_layout(cfg).size, depth=cfg.kv_heads + 1)
        m.submodules.tags = tags = SyncFIFOBuffered(
            width=self._pair_layout.size, depth=3 * cfg.lanes + 2)
        wiring.connect(m, rope.out, qk_quant.values)
        cache, loader = self._memory_clients(m, rope)
        for name in ("write_cmd", "write_data", "write_done"):
            wiring.connect(m, getattr(writer, name), getattr(cache, name))
        keys_port = wiring.flipped(self.key_memory) if self._kv.align > 1 else cache
        for name in ("read_cmd", "read_data"):
            wiring.connect(m, getattr(reader, name), getattr(keys_port, name))
        wiring.connect(m, reader.keys, core.keys)
        m.d.comb += core.score_scale.eq(self.score_scale)

        slots = self._max_queries * cfg.heads
        m.submodules.query_buffer = query_buffer = Memory(
            shape=_head_layout(cfg), depth=slots, init=[])
        m.submodules.output_buffer = output_buffer = Memory(
            shape=unsigned(32 * cfg.io_lanes), depth=slots * cfg.io_beats_per_head, init=[])

        job = Signal.like(self.job.payload)
        idle = Signal()
        begin = Signal()                # a job is taken: every counter restarts
        restarts = []                   # (counter, value) pairs that `begin` sets
        m.d.comb += [self.job.ready.eq(idle), begin.eq(self.job.valid & self.job.ready)]
        with m.If(begin):
            m.d.sync += job.eq(self.job.payload)
        request = self.job.payload
        bad = ((request.tokens == 0) | (request.tokens > self._max_queries) |
               (request.start + request.tokens > cfg.capacity))
        with m.FSM():
            with m.State("idle"):
                m.d.comb += idle.eq(1)
                with m.If(begin & bad):
                    m.d.sync += self.error.eq(1)
                with m.Elif(begin):
                    m.next = "intake" if loader is None else "table"
            if loader is not None:
                with m.State("table"):
                    with m.If(self._load_window(m, job, loader, restarts)):
                        m.next = "intake"
            with m.State("intake"):
                self._route(m, job, restarts, rope, v_quant)
                stored = self._store_heads(m, job, restarts, qk_quant, k_heads, query_buffer)
                written = self._pack_records(m, job, restarts, v_quant, k_heads, writer)
                with m.If(stored & written & (writer.pending == 0)):
                    m.next = "attend"
            with m.State("attend"):
                self._schedule(m, job, restarts, reader, core, tags, query_buffer)
                with m.If(self._collect(m, job, restarts, core, tags, output_buffer)):
                    m.next = "drain"
            with m.State("drain"):
                with m.If(self._drain(m, job, restarts, output_buffer)):
                    m.next = "idle"
        # Counters live in the phases that use them, but restart outside them.
        with m.If(begin):
            m.d.sync += [counter.eq(value) for counter, value in restarts]
        return m

    @property
    def _pair_layout(self):
        """A (token, head) pair: which output a lane's result belongs to."""
        return data.StructLayout({"token": unsigned(max(1, (self._max_queries - 1).bit_length())),
                                  "head": unsigned(max(1, (self._config.heads - 1).bit_length()))})

    def _memory_clients(self, m, rope):
        """The port the cache's writer and reader use and, with the table in memory,
        the window's loader (which takes the port in the ``table`` phase), else None."""
        if self._rope_base is None:
            return wiring.flipped(self.memory), None
        cfg, memory = self._config, self._kv.memory
        m.submodules.loader = loader = RopeWindowLoader(
            memory, rope.rows, self._max_queries, self._rope_base, rope.write_layout,
            position_shape(cfg))
        m.submodules.port_mux = mux = PortMux(memory, ("cache", "table"))
        wiring.connect(m, loader.rows, rope.table)
        wiring.connect(m, loader.memory, mux.table)
        wiring.connect(m, mux.memory, wiring.flipped(self.memory))
        m.d.comb += mux.select.eq(loader.busy | loader.request.valid)
        return mux.cache, loader

    def _load_window(self, m, job, loader, restarts):
        """Ask for the job's rows of RoPE's table; true once they are in the window."""
        requested = Signal(name="table_requested")
        m.d.comb += [loader.request.valid.eq(~requested),
                     loader.request.payload.start.eq(job.start),
                     loader.request.payload.tokens.eq(job.tokens)]
        with m.If(loader.request.valid & loader.request.ready):
            m.d.sync += requested.eq(1)
        restarts.append((requested, 0))
        return requested & ~loader.busy

    # -- intake --------------------------------------------------------------------------

    def _route(self, m, job, restarts, rope, v_quant):
        """Send Q and K heads through RoPE (at their token's position), V heads around it."""
        cfg = self._config
        heads_per_token = cfg.heads + 2 * cfg.kv_heads
        token = Signal(range(self._max_queries + 1), name="in_token")
        head = Signal(range(heads_per_token), name="in_head")
        beat = self.qkv.payload
        to_rope = head < cfg.heads + cfg.kv_heads
        valid = self.qkv.valid & (token != job.tokens)     # the next job's beats wait
        m.d.comb += [
            rope.head.payload.eq(beat), v_quant.values.payload.eq(beat),
            rope.head.valid.eq(valid & to_rope),
            v_quant.values.valid.eq(valid & ~to_rope),
            self.qkv.ready.eq((token != job.tokens) &
                              Mux(to_rope, rope.head.ready, v_quant.values.ready)),
            rope.position.valid.eq(1),
            # RoPE's window starts at the job's first position; its ROM at position 0.
            rope.position.payload.eq(token if self._rope_base is not None
                                     else job.start + token),
        ]
        with m.If(self.qkv.valid & self.qkv.ready & beat.last):
            with m.If(head == heads_per_token - 1):
                m.d.sync += [head.eq(0), token.eq(token + 1)]
            with m.Else():
                m.d.sync += head.eq(head + 1)
        restarts += [(c, 0) for c in (token, head)]

    def _collect_head(self, m, quant, name):
        """Gather one head's code beats and its scale; ``ready`` takes the head."""
        cfg = self._config
        beats = cfg.io_beats_per_head
        codes = Signal(8 * cfg.head_dim, name=f"{name}_codes")
        count = Signal(range(beats + 1), name=f"{name}_beats")
        full = count == beats
        head = Signal(_head_layout(cfg), name=f"{name}_head")
        ready = Signal(name=f"{name}_ready")
        m.d.comb += [quant.codes.ready.eq(~full),
                     head.codes.eq(codes), head.scale.eq(quant.scale.payload),
                     quant.scale.ready.eq(full & ready)]
        with m.If(quant.codes.valid & quant.codes.ready):
            width = 8 * cfg.io_lanes
            m.d.sync += [codes.eq(Cat(codes[width:], quant.codes.payload.codes)),
                         count.eq(count + 1)]
        with m.If(full & quant.scale.valid & ready):
            m.d.sync += count.eq(0)
        return head, full & quant.scale.valid, ready

    def _store_heads(self, m, job, restarts, qk_quant, k_heads, query_buffer):
        """Quantized Q heads into the query buffer, K heads into the K FIFO."""
        cfg = self._config
        head, valid, ready = self._collect_head(m, qk_quant, "qk")
        index = Signal(range(cfg.heads + cfg.kv_heads), name="qk_index")
        slot = Signal(range(self._max_queries * cfg.heads + 1), name="qk_slot")
        is_query = index < cfg.heads
        write = query_buffer.write_port()
        m.d.comb += [
            write.addr.eq(slot), write.data.eq(head), write.en.eq(valid & is_query),
            k_heads.w_data.eq(head), k_heads.w_en.eq(valid & ~is_query),
            ready.eq(is_query | k_heads.w_rdy),
        ]
        with m.If(valid & ready):
            m.d.sync += index.eq(Mux(index == cfg.heads + cfg.kv_heads - 1, 0, index + 1))
            with m.If(is_query):
                m.d.sync += slot.eq(slot + 1)
        restarts += [(c, 0) for c in (index, slot)]
        return slot == job.tokens * cfg.heads

    def _pack_records(self, m, job, restarts, v_quant, k_heads, writer):
        """Join each V head with its K head into a record and hand it to the writer."""
        cfg = self._config
        value, valid, ready = self._collect_head(m, v_quant, "v")
        key = _head_layout(cfg)(k_heads.r_data)
        kv_head = Signal(range(cfg.kv_heads), name="record_kv_head")
        token = Signal(range(self._max_queries + 1), name="record_token")
        request = writer.records.payload
        m.d.comb += [
            request.record.k.eq(key.codes), request.record.k_scale.eq(key.scale),
            request.record.v.eq(value.codes), request.record.v_scale.eq(value.scale),
            request.layer.eq(job.layer), request.kv_head.eq(kv_head),
            request.position.eq(job.start + token),
            writer.records.valid.eq(valid & k_heads.r_rdy),
            ready.eq(k_heads.r_rdy & writer.records.ready),
            k_heads.r_en.eq(valid & ready),
        ]
        with m.If(valid & ready):
            with m.If(kv_head == cfg.kv_heads - 1):
                m.d.sync += [kv_head.eq(0), token.eq(token + 1)]
            with m.Else():
                m.d.sync += kv_head.eq(kv_head + 1)
        restarts += [(c, 0) for c in (kv_head, token)]
        return token == job.tokens

    # -- attention -----------------------------------------------------------------------

    def _schedule(self, m, job, restarts, reader, core, tags, query_buffer):
        """Blocks of (query, head) pairs per kv head, tokens from last to first: each
        pair's query to the core (read from the query buffer), its tag to the output
        side, and for each block's first pair the block's pass to the KV reader."""
        cfg = self._config
        kv_head = Signal(range(cfg.kv_heads), name="sched_kv_head")
        token = Signal(range(self._max_queries), name="sched_token")
        member = Signal(range(cfg.kv_group), name="sched_member")    # head within the group
        lane = Signal(range(cfg.lanes), name="sched_lane")
        finished = Signal(name="sched_finished")
        head = kv_head * cfg.kv_group + member
        # The tag goes through the pair layout: with one query per job ``token`` has no
        # bits, and a bare Cat(token, head) would shift the head into the token field.
        pair = Signal(self._pair_layout, name="sched_pair")
        m.d.comb += [pair.token.eq(token), pair.head.eq(head)]
        group_end = (token == 0) & (member == cfg.kv_group - 1)
        block_end = (lane == cfg.lanes - 1) | group_end
        position = job.start + token

        # One registered query slot in front of the core, filled from the buffer.
        read = query_buffer.read_port()
        query, meta = core.queries, Signal(attention_query_layout(cfg))
        free = ~query.valid | query.ready
        first = lane == 0
        go = Signal()
        m.d.comb += [
            go.eq(~finished & free & tags.w_rdy & (~first | reader.passes.ready)),
            read.addr.eq(token * cfg.heads + head), read.en.eq(go),
            reader.passes.valid.eq(~finished & free & tags.w_rdy & first),
            reader.passes.payload.layer.eq(job.layer),
            reader.passes.payload.kv_head.eq(kv_head),
            reader.passes.payload.count.eq(position + 1),
            tags.w_en.eq(go), tags.w_data.eq(pair),
            query.payload.eq(meta),
            query.payload.codes.eq(read.data.codes), query.payload.scale.eq(read.data.scale),
        ]
        with m.If(query.ready):
            m.d.sync += query.valid.eq(0)
        with m.If(go):
            m.d.sync += [query.valid.eq(1), meta.position.eq(position),
                         meta.last.eq(block_end), lane.eq(Mux(block_end, 0, lane + 1))]
            with m.If(member != cfg.kv_group - 1):
                m.d.sync += member.eq(member + 1)
            with m.Else():
                m.d.sync += [member.eq(0), token.eq(token - 1)]
                with m.If(token == 0):
                    m.d.sync += token.eq(job.tokens - 1)
                    with m.If(kv_head == cfg.kv_heads - 1):
                        m.d.sync += finished.eq(1)
                    with m.Else():
                        m.d.sync += kv_head.eq(kv_head + 1)
        restarts += [(kv_head, 0), (member, 0), (lane, 0), (finished, 0),
                           (token, self.job.payload.tokens - 1)]

    def _collect(self, m, job, restarts, core, tags, output_buffer):
        """Write each lane's result beats to their (token, head) place; true when all
        of the job's outputs are in."""
        cfg = self._config
        beats = cfg.io_beats_per_head
        beat = Signal(range(beats), name="out_beat")
        done = Signal(range(self._max_queries * cfg.heads + 1), name="out_done")
        tag = self._pair_layout(tags.r_data)
        write = output_buffer.write_port()
        take = core.results.valid & tags.r_rdy
        m.d.comb += [
            core.results.ready.eq(tags.r_rdy),
            write.addr.eq((tag.token * cfg.heads + tag.head) * beats + beat),
            write.data.eq(core.results.payload.values), write.en.eq(take),
        ]
        with m.If(take):
            m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))
            with m.If(beat == beats - 1):
                m.d.comb += tags.r_en.eq(1)
                m.d.sync += done.eq(done + 1)
        restarts += [(c, 0) for c in (beat, done)]
        return done == job.tokens * cfg.heads

    def _drain(self, m, job, restarts, output_buffer):
        """Stream the outputs in (token, head, dim) order, a buffer word (``io_lanes``
        values) a beat; true after the last beat."""
        cfg = self._config
        per_token = cfg.heads * cfg.io_beats_per_head
        beat = Signal(range(self._max_queries * per_token + 1), name="drain_beat")
        within = Signal(range(per_token), name="drain_within")
        total = job.tokens * per_token
        read = output_buffer.read_port()
        out = self.out
        free = ~out.valid | out.ready
        go = free & (beat != total)
        m.d.comb += [read.addr.eq(beat), read.en.eq(go), out.payload.values.eq(read.data)]
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(go):
            m.d.sync += [out.valid.eq(1), out.payload.last.eq(within == per_token - 1),
                         beat.eq(beat + 1),
                         within.eq(Mux(within == per_token - 1, 0, within + 1))]
        restarts += [(c, 0) for c in (beat, within)]
        return (beat == total) & free
