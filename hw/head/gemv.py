"""The LM head's GEMV with a running top-k (docs/head.md, docs/numerics.md section 10).

One job scores every row of the head (int8 or int4 codes, docs/head.md) against one
token's activation codes, ``score_i = sum_g m_ig * sum_{j in g} c_j q_ij`` exact (int8:
one group per row, ``m_i * sum_j c_j q_ij``), and returns the ``k`` best ``(index,
score)`` pairs, score descending, equal scores by index ascending (``head_topk``; the
first is ``head_argmax``). The head streams from memory in
:class:`~tritium.hw.head_layout.HeadLayout` order, a word per cycle when the memory
delivers one: each code word is multiplied against the matching word of codes held on
chip, so a row costs its ``row_words`` cycles and a block its ``mantissa_words`` more.

The pieces, in stream order: :class:`HeadReader` (read commands, block by block),
:class:`CodesStore` (the token's codes), :class:`RowWalker` (tells mantissa words from
code words and tags each code word with its groups' mantissas and ends),
:class:`WordDot` (products and an adder tree per group), :class:`GroupScorer` (group
sums, times their mantissas, row sums) and :class:`TopK`. Past the walker nothing ever
stalls: the only back-pressure, on ``result``, comes after the last row, so the
pipeline is plain registers with a valid bit and its depth changes latency, never
results.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped

from ..config import AcceleratorConfig
from ..head_layout import MANTISSA_LANE_BITS, HeadLayout, head_layout_of
from ..layouts import code_beat_layout
from ..memory.port import MemoryPortSignature, command_layout, read_data_layout

__all__ = ["SCORE_BITS", "group_sum_bits", "word_tag_layout", "head_job_layout",
           "head_result_layout", "HeadReader", "CodesStore", "RowWalker", "WordDot",
           "GroupScorer", "TopK", "HeadGEMV"]

#: Signed width of a score and of a row's sum: |score| < 2**47 (docs/numerics.md 10).
SCORE_BITS = 48

_mantissa = unsigned(MANTISSA_LANE_BITS)


def group_sum_bits(layout: HeadLayout) -> int:
    """Signed width of one group's sum of int8 x code products (any codes the word can
    hold: 128 * 2**(code_bits - 1) per input): 26 bits for an int8 row of 1536, 17 for
    an int4 group of 64."""
    return (128 * 2 ** (layout.code_bits - 1) * layout.group).bit_length() + 1


def word_tag_layout(layout: HeadLayout) -> data.StructLayout:
    """What travels with a code word down the pipeline: the mantissas of the groups it
    meets, whether it ends a group (its sums are complete) and whether it ends a row."""
    return data.StructLayout({"row_end": unsigned(1), "group_end": unsigned(1),
                              "mantissas": data.ArrayLayout(_mantissa, layout.word_groups)})


def head_job_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One job: the head's word address and its rows (1 .. the model's vocabulary)."""
    return data.StructLayout({"base": unsigned(config.weight_memory.addr_width),
                              "rows": unsigned(config.model.vocab_size.bit_length())})


def head_result_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One top-k entry: a row and its exact score; ``last`` on the job's final entry."""
    return data.StructLayout({"index": unsigned(config.id_bits), "score": signed(SCORE_BITS),
                              "last": unsigned(1)})


class HeadReader(wiring.Component):
    """Issue the read commands of a job's head: one per block (its mantissa words and its
    rows' codes), cut into commands of at most ``max_words`` words. The head is
    contiguous, so the blocks' commands follow each other without gaps in addresses;
    each is presented while the memory still streams the one before.

    Members
    -------
    start : ``In(1)`` loads ``base`` and ``rows``.
    base, rows : ``In``
    read_cmd : ``Out(stream.Signature(command_layout(memory)))``
    """

    def __init__(self, config: AcceleratorConfig, max_words: int):
        self._layout = head_layout_of(config)
        self._max_words = max_words
        job = head_job_layout(config)
        super().__init__({
            "start": In(1), "base": In(job.members["base"]), "rows": In(job.members["rows"]),
            "read_cmd": Out(stream.Signature(command_layout(config.weight_memory))),
        })

    def elaborate(self, platform):
        m = Module()
        layout, command = self._layout, self.read_cmd
        addr, rows_left = Signal.like(self.base), Signal.like(self.rows)
        block_left = Signal(range(layout.block_words + 1))   # words still to command
        block_rows = Mux(rows_left < layout.block_rows, rows_left, layout.block_rows)
        words = Mux(block_left > self._max_words, self._max_words, block_left)
        m.d.comb += [command.valid.eq(block_left != 0),
                     command.payload.addr.eq(addr), command.payload.words.eq(words)]
        with m.If((block_left == 0) & (rows_left != 0)):
            m.d.sync += [block_left.eq(layout.mantissa_words + block_rows * layout.row_words),
                         rows_left.eq(rows_left - block_rows)]
        with m.If(command.valid & command.ready):
            m.d.sync += [addr.eq(addr + words), block_left.eq(block_left - words)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), rows_left.eq(self.rows), block_left.eq(0)]
        return m


class CodesStore(wiring.Component):
    """The token's ``hidden`` activation codes, as words of one head word's codes
    (``codes_per_word`` int8 codes: the head word's width for int8, twice it for int4).

    While ``enable`` is high it takes ``hidden / lanes`` beats (their ``last`` is not
    needed: the count is fixed) and writes beat ``b`` into lanes ``b % per_word`` of word
    ``b // per_word`` (32 bits per lane, 8 per code). Lanes past ``hidden`` in the last
    word keep whatever they held: the head's padding codes are zero, so they add
    nothing. ``read_data`` is word ``read_addr`` a cycle later.

    Members
    -------
    codes : ``In(stream.Signature(code_beat_layout(lanes)))``
    enable : ``In(1)``
    loaded : ``Out(1)`` the last beat is taken this cycle.
    read_addr : ``In(range(row_words))``; read_data : ``Out(ArrayLayout(signed(8), ...))``
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._layout = layout = head_layout_of(config)
        super().__init__({
            "codes": In(stream.Signature(code_beat_layout(config.lanes))),
            "enable": In(1), "loaded": Out(1),
            "read_addr": In(range(layout.row_words)),
            "read_data": Out(data.ArrayLayout(signed(8), layout.codes_per_word)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, layout = self._config.lanes, self._layout
        beats, per_word = self._config.model.hidden // lanes, layout.codes_per_word // lanes
        m.submodules.memory = memory = Memory(shape=unsigned(8 * layout.codes_per_word),
                                              depth=layout.row_words, init=[])
        write = memory.write_port(granularity=8 * lanes)
        read = memory.read_port()
        beat = Signal(range(beats))
        take = self.codes.valid & self.codes.ready
        m.d.comb += [
            self.codes.ready.eq(self.enable),
            self.loaded.eq(take & (beat == beats - 1)),
            write.addr.eq(beat // per_word),
            write.data.eq(Cat(*[self.codes.payload.codes.as_value()] * per_word)),
            write.en.eq(take << (beat % per_word)),
            read.addr.eq(self.read_addr), self.read_data.eq(read.data),
        ]
        with m.If(take):
            m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))
        return m


class RowWalker(wiring.Component):
    """Follow the head's words through its blocks: keep each block's mantissa words and
    pass each code word on, registered, tagged with the mantissas of the groups it meets
    and whether it ends a group and a row (:func:`word_tag_layout`).

    The mantissas are used in the order they are stored (row by row, group by group),
    so they sit in a shift register that moves on by a word's groups after each word
    that ends one. They travel with their words rather than being looked up at the end
    of the pipeline: by then the next block's mantissa words may have replaced them.
    ``codes_addr`` is the code word's index in its row, for the codes store, whose read
    data arrives with the registered outputs.

    Members
    -------
    start : ``In(1)`` loads ``rows``; rows : ``In``
    words : ``In(stream.Signature(read_data_layout(memory)))``, taken while ``enable``.
    codes_addr : ``Out(range(row_words))``
    valid, weights, tag : ``Out``: a code word and its :func:`word_tag_layout`.
    """

    def __init__(self, config: AcceleratorConfig):
        self._layout = layout = head_layout_of(config)
        super().__init__({
            "start": In(1), "rows": In(head_job_layout(config).members["rows"]),
            "words": In(stream.Signature(read_data_layout(config.weight_memory))),
            "enable": In(1),
            "codes_addr": Out(range(layout.row_words)),
            "valid": Out(1),
            "weights": Out(data.ArrayLayout(signed(layout.code_bits), layout.codes_per_word)),
            "tag": Out(word_tag_layout(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        layout = self._layout
        lane_bits = MANTISSA_LANE_BITS
        mantissas = Signal(layout.mantissa_words * layout.data_width)
        word, row = Signal(range(layout.row_words)), Signal(range(layout.block_rows))
        group_word = Signal(range(layout.group_words))
        rows_left = Signal.like(self.rows)
        loaded = Signal(range(layout.mantissa_words + 1))   # the block's mantissa words so far
        loading = loaded != layout.mantissa_words
        take = self.words.valid & self.words.ready
        row_end = word == layout.row_words - 1
        group_end = row_end | (group_word == layout.group_words - 1)
        # A row's last word may be part padding: it moves on by the row's remaining groups.
        last_groups = layout.groups - (layout.row_words - 1) * layout.word_groups \
            if layout.word_groups > 1 else 1
        shifted = Mux(row_end, mantissas >> (lane_bits * last_groups),
                      mantissas >> (lane_bits * layout.word_groups))
        m.d.comb += [self.words.ready.eq(self.enable), self.codes_addr.eq(word)]
        m.d.sync += [self.valid.eq(take & ~loading),
                     self.weights.eq(self.words.payload.data),
                     self.tag.row_end.eq(row_end), self.tag.group_end.eq(group_end),
                     self.tag.mantissas.eq(mantissas)]
        with m.If(take & loading):
            m.d.sync += [mantissas.word_select(loaded, layout.data_width)
                         .eq(self.words.payload.data), loaded.eq(loaded + 1)]
        with m.Elif(take):
            m.d.sync += [word.eq(word + 1), group_word.eq(group_word + 1)]
            with m.If(group_end):
                m.d.sync += [group_word.eq(0), mantissas.eq(shifted)]
            with m.If(row_end):
                m.d.sync += [word.eq(0), row.eq(row + 1), rows_left.eq(rows_left - 1)]
                with m.If((row == layout.block_rows - 1) | (rows_left == 1)):
                    m.d.sync += [row.eq(0), loaded.eq(0)]
        with m.If(self.start):
            m.d.sync += [rows_left.eq(self.rows), word.eq(0), row.eq(0), group_word.eq(0),
                         loaded.eq(0)]
        return m


class WordDot(wiring.Component):
    """The dot products of one word of ``n`` weight codes (``code_bits`` bits, signed)
    with ``n`` int8 codes, one per group of ``n / groups`` consecutive codes, pipelined: a
    register after the products and after every level of the adder trees, so the
    latency is ``1 + ceil(log2(n / groups))`` cycles; ``tag`` travels alongside.

    The ``n`` (= ``codes_per_word``: 64 int8 or 128 int4 on a 512-bit port) products are
    the unit's multipliers: yosys maps each to a DSP (a MULT18X18D on the ECP5, a
    DSP48E2 on the KV260); the sums are carry chains.

    Members
    -------
    valid, weights, codes, tag : ``In``; out_valid, sums, out_tag : ``Out``
    """

    def __init__(self, n: int, code_bits: int, groups: int, tag_shape):
        if n % groups:
            raise ValueError(f"{groups} groups do not divide a word of {n} codes")
        self._n, self._groups = n, groups
        self._product_bits = 8 + code_bits
        self.latency = 1 + (n // groups - 1).bit_length()
        self.sum_bits = self._product_bits + self.latency - 1
        super().__init__({
            "valid": In(1), "weights": In(data.ArrayLayout(signed(code_bits), n)),
            "codes": In(data.ArrayLayout(signed(8), n)), "tag": In(tag_shape),
            "out_valid": Out(1),
            "sums": Out(data.ArrayLayout(signed(self.sum_bits), groups)),
            "out_tag": Out(tag_shape),
        })

    def elaborate(self, platform):
        m = Module()
        width = self._product_bits
        products = [Signal(signed(width), name=f"product_{j}") for j in range(self._n)]
        m.d.sync += [p.eq(self.weights[j] * self.codes[j]) for j, p in enumerate(products)]
        size = self._n // self._groups
        levels = [products[g * size:(g + 1) * size] for g in range(self._groups)]
        valid, tag = Signal(), Signal.like(self.tag)
        m.d.sync += [valid.eq(self.valid), tag.eq(self.tag)]
        depth = 0
        while len(levels[0]) > 1:
            depth += 1
            next_levels = []
            for g, level in enumerate(levels):
                pairs = [level[j:j + 2] for j in range(0, len(level), 2)]
                sums = [Signal(signed(width + depth), name=f"sum_{g}_{depth}_{j}")
                        for j in range(len(pairs))]
                m.d.sync += [s.eq(sum(pair)) for s, pair in zip(sums, pairs)]
                next_levels.append(sums)
            levels = next_levels
            next_valid, next_tag = Signal(), Signal.like(self.tag)
            m.d.sync += [next_valid.eq(valid), next_tag.eq(tag)]
            valid, tag = next_valid, next_tag
        m.d.comb += [self.out_valid.eq(valid), self.out_tag.eq(tag),
                     *(self.sums[g].eq(level[0]) for g, level in enumerate(levels))]
        return m


class GroupScorer(wiring.Component):
    """Turn a row's word sums into its exact score: sum each group's word sums (a group
    that spans words), multiply each finished group sum by its mantissa, and add a row's
    products; the score is three cycles after the row's last word sums (a register for
    the group sums, one for the products, one for the row sum). The products are
    ``group_bits`` x 17 bits signed: one 27 x 18 DSP48 each for an int8 row of 1536
    codes or an int4 group.

    Members
    -------
    clear : ``In(1)``; valid, partials, tag : ``In``; out_valid, score : ``Out``
    """

    def __init__(self, layout: HeadLayout, partial_bits: int):
        self._layout = layout
        self._group_bits = group_sum_bits(layout)
        tag = word_tag_layout(layout)
        super().__init__({
            "clear": In(1), "valid": In(1),
            "partials": In(data.ArrayLayout(signed(partial_bits), layout.word_groups)),
            "tag": In(tag),
            "out_valid": Out(1), "score": Out(signed(SCORE_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        groups, spans = self._layout.word_groups, self._layout.group_words > 1
        group_sums = [Signal(signed(self._group_bits), name=f"group_sum_{g}")
                      for g in range(groups)]
        products = [Signal(signed(SCORE_BITS), name=f"product_{g}") for g in range(groups)]
        mantissas = Signal.like(self.tag.mantissas)
        summed, summed_row_end = Signal(), Signal()      # group sums are complete
        multiplied, multiplied_row_end = Signal(), Signal()
        row_sum = Signal(signed(SCORE_BITS))
        m.d.sync += [summed.eq(self.valid & self.tag.group_end),
                     summed_row_end.eq(self.valid & self.tag.row_end),
                     mantissas.eq(self.tag.mantissas),
                     multiplied.eq(summed), multiplied_row_end.eq(summed_row_end),
                     *(product.eq(group_sum * mantissas[g])
                       for g, (product, group_sum) in enumerate(zip(products, group_sums))),
                     self.out_valid.eq(multiplied_row_end)]
        if spans:                   # a group's words: accumulate until its last
            for g, (total, partial) in enumerate(zip(group_sums, self.partials)):
                running = Signal.like(total, name=f"running_{g}")
                with m.If(self.valid & self.tag.group_end):
                    m.d.sync += [total.eq(running + partial), running.eq(0)]
                with m.Elif(self.valid):
                    m.d.sync += running.eq(running + partial)
                with m.If(self.clear):
                    m.d.sync += running.eq(0)
        else:
            m.d.sync += [total.eq(partial) for total, partial in zip(group_sums, self.partials)]
        total = row_sum + sum(products)
        with m.If(multiplied):
            m.d.sync += row_sum.eq(Mux(multiplied_row_end, 0, total))
            with m.If(multiplied_row_end):
                m.d.sync += self.score.eq(total)
        with m.If(self.clear):
            m.d.sync += row_sum.eq(0)
        return m


class TopK(wiring.Component):
    """The ``k`` best scores so far, best first, with their row indices.

    Rows arrive in index order, so a new score goes after every kept one that is at
    least as large: an equal score never displaces an earlier row, which is the golden
    ordering (score descending, index ascending). ``count`` is the rows inserted since
    ``clear`` (each one's index). ``shift`` drops ``entries[0]`` and moves the rest up,
    to send them out one by one.

    Members
    -------
    clear, insert, shift : ``In(1)``; score : ``In(signed(SCORE_BITS))``
    entries : ``Out(ArrayLayout({valid, index, score}, k))``; count : ``Out``
    """

    def __init__(self, config: AcceleratorConfig, k: int):
        self._k = k
        entry = data.StructLayout({"valid": unsigned(1), "index": unsigned(config.id_bits),
                                   "score": signed(SCORE_BITS)})
        super().__init__({
            "clear": In(1), "insert": In(1), "score": In(signed(SCORE_BITS)), "shift": In(1),
            "entries": Out(data.ArrayLayout(entry, k)),
            "count": Out(head_job_layout(config).members["rows"]),
        })

    def elaborate(self, platform):
        m = Module()
        entries = self.entries
        beaten = [~e.valid | (self.score > e.score) for e in entries]   # monotone in j
        with m.If(self.clear):
            m.d.sync += [self.count.eq(0), *(e.valid.eq(0) for e in entries)]
        with m.Elif(self.insert):
            m.d.sync += self.count.eq(self.count + 1)
            for j, entry in enumerate(entries):
                new = Cat(Const(1, 1), self.count[:len(entry.index)], self.score)
                shifted = new if j == 0 else Mux(beaten[j - 1], entries[j - 1], new)
                with m.If(beaten[j]):
                    m.d.sync += entry.eq(shifted)
        with m.Elif(self.shift):
            m.d.sync += [*(entries[j].eq(entries[j + 1]) for j in range(self._k - 1)),
                         entries[self._k - 1].valid.eq(0)]
        return m


class HeadGEMV(wiring.Component):
    """Score a token's activation codes against the LM head in memory (the design's
    ``head_format``) and return the top ``k`` rows.

    A job takes the head's ``base`` word address and ``rows`` (1 .. vocabulary; at least
    ``k`` for ``k`` entries, else ``rows`` entries; a job of no rows takes its codes and
    returns nothing); ``hidden`` is the model's. The unit
    issues the head's read commands at once, takes ``hidden / lanes`` beats of codes,
    then the head's words at up to one per cycle, and after the last row sends the top
    ``k`` entries on ``result``, best first (the first is the argmax), ``last`` on the
    final one. The next job is taken after that.

    Parameters
    ----------
    config : :class:`AcceleratorConfig`
    k : int
        Entries of the top-k, >= 1: each costs a 48-bit comparator and register.
    max_read_words : int
        Largest read command, 1 .. ``2**len_width - 1`` (the default).

    Members
    -------
    job : ``In(stream.Signature(head_job_layout(config)))``
    codes : ``In(stream.Signature(code_beat_layout(lanes)))``
    memory : ``Out(MemoryPortSignature(config.weight_memory))`` (reads only)
    result : ``Out(stream.Signature(head_result_layout(config)))``
    """

    def __init__(self, config: AcceleratorConfig, k: int = 4, max_read_words: int = None):
        longest = 2 ** config.weight_memory.len_width - 1
        max_read_words = longest if max_read_words is None else max_read_words
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"the head's top-k needs a positive integer k, not {k!r}")
        if (isinstance(max_read_words, bool) or not isinstance(max_read_words, int)
                or not 1 <= max_read_words <= longest):
            raise ValueError(f"max_read_words must be from 1 to {longest}, "
                             f"not {max_read_words!r}")
        self._config, self._k, self._max_read_words = config, k, max_read_words
        super().__init__({
            "job": In(stream.Signature(head_job_layout(config))),
            "codes": In(stream.Signature(code_beat_layout(config.lanes))),
            "memory": Out(MemoryPortSignature(config.weight_memory)),
            "result": Out(stream.Signature(head_result_layout(config))),
        })

    @property
    def k(self) -> int:
        return self._k

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        layout = head_layout_of(cfg)
        m.submodules.reader = reader = HeadReader(cfg, self._max_read_words)
        m.submodules.store = store = CodesStore(cfg)
        m.submodules.walker = walker = RowWalker(cfg)
        m.submodules.dot = dot = WordDot(layout.codes_per_word, layout.code_bits,
                                         layout.word_groups, word_tag_layout(layout))
        m.submodules.scorer = scorer = GroupScorer(layout, dot.sum_bits)
        m.submodules.topk = topk = TopK(cfg, self._k)
        rows, start = Signal.like(self.job.payload.rows), Signal()
        connect(m, reader.read_cmd, flipped(self.memory.read_cmd))
        connect(m, flipped(self.memory.read_data), walker.words)
        connect(m, flipped(self.codes), store.codes)
        m.d.comb += [
            reader.start.eq(start), reader.base.eq(self.job.payload.base),
            reader.rows.eq(self.job.payload.rows),
            walker.start.eq(start), walker.rows.eq(self.job.payload.rows),
            scorer.clear.eq(start), topk.clear.eq(start),
            store.read_addr.eq(walker.codes_addr),
            dot.valid.eq(walker.valid), dot.weights.eq(walker.weights),
            dot.codes.eq(store.read_data), dot.tag.eq(walker.tag),
            scorer.valid.eq(dot.out_valid), scorer.partials.eq(dot.sums),
            scorer.tag.eq(dot.out_tag),
            topk.insert.eq(scorer.out_valid), topk.score.eq(scorer.score),
            self.result.payload.index.eq(topk.entries[0].index),
            self.result.payload.score.eq(topk.entries[0].score),
            self.result.payload.last.eq(~topk.entries[1].valid if self._k > 1 else 1),
        ]
        with m.FSM():
            with m.State("idle"):
                m.d.comb += [self.job.ready.eq(1), start.eq(self.job.valid)]
                with m.If(self.job.valid):
                    m.d.sync += rows.eq(self.job.payload.rows)
                    m.next = "codes"
            with m.State("codes"):
                m.d.comb += store.enable.eq(1)
                with m.If(store.loaded):
                    m.next = "head"
            with m.State("head"):
                m.d.comb += walker.enable.eq(1)
                with m.If(topk.count == rows):
                    m.next = "result"
            with m.State("result"):
                m.d.comb += [self.result.valid.eq(topk.entries[0].valid),
                             topk.shift.eq(self.result.valid & self.result.ready)]
                with m.If(~topk.entries[0].valid | self.result.ready & self.result.payload.last):
                    m.next = "idle"
        return m
