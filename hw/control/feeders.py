"""The small movers around the norm and the linear: gains from memory, codes into and
out of the codes buffer (docs/program.md)."""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..elementwise.common import gain_beat_layout
from ..fixedpoint import scale_layout
from ..layouts import act_beat_layout, code_beat_layout
from ..memory.port import MemoryPortSignature

__all__ = ["GainFeeder", "GainBuffer", "CodesWriter", "CodesFeeder", "codes_row_beats",
           "codes_read_members"]


def codes_row_beats(config: AcceleratorConfig) -> int:
    """Beats of the codes buffer per token: the widest padded K."""
    return config.tlmm.max_k // config.lanes


def codes_read_members(config: AcceleratorConfig) -> dict:
    """A reader's side of the codes buffer's read port: ``read_addr`` and ``read_en``
    out, ``read_data`` (a beat of ``lanes`` int8 codes) in a cycle later."""
    return {"read_addr": Out(range(config.max_tokens * codes_row_beats(config))),
            "read_en": Out(1),
            "read_data": In(8 * config.lanes)}


def _command(width_beats: int, max_tokens: int) -> data.StructLayout:
    return data.StructLayout({"address": unsigned(32), "beats": unsigned(width_beats),
                              "tokens": unsigned(max_tokens.bit_length())})


class GainFeeder(wiring.Component):
    """Read a norm's int16 gains from memory once per token and cut them into beats.

    A memory word holds ``2 * lanes`` gains, i.e. two beats, low half first; a vector
    of an odd number of beats leaves the last word's high half unused.

    Members
    -------
    command : ``In(stream.Signature({address, beats, tokens}))``
    memory : ``Out(MemoryPortSignature(memory))`` (reads only)
    gains : ``Out(stream.Signature(gain_beat_layout(lanes)))``
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "command": In(stream.Signature(_command(16, config.max_tokens))),
            "memory": Out(MemoryPortSignature(config.memory)),
            "gains": Out(stream.Signature(gain_beat_layout(config.lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.lanes
        command = Signal.like(self.command.payload)
        commands_left = Signal.like(command.tokens)
        beat = Signal(16)                    # beat within the current token's vector
        high = Signal()                      # the word's second beat is next
        words = (command.beats + 1) >> 1
        read_cmd, read_data = self.memory.read_cmd, self.memory.read_data
        m.d.comb += [
            self.command.ready.eq((commands_left == 0) & ~read_data.valid),
            read_cmd.valid.eq(commands_left != 0),
            read_cmd.payload.addr.eq(command.address), read_cmd.payload.words.eq(words),
            self.gains.valid.eq(read_data.valid),
            self.gains.payload.eq(read_data.payload.data.word_select(high, 16 * lanes)),
        ]
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += [command.eq(self.command.payload),
                         commands_left.eq(self.command.payload.tokens)]
        with m.If(read_cmd.valid & read_cmd.ready):
            m.d.sync += commands_left.eq(commands_left - 1)
        with m.If(self.gains.valid & self.gains.ready):
            last_of_vector = beat == command.beats - 1
            m.d.sync += [beat.eq(beat + 1), high.eq(~high)]
            with m.If(last_of_vector):
                m.d.sync += [beat.eq(0), high.eq(0)]
            m.d.comb += read_data.ready.eq(high | last_of_vector)
        return m


class GainBuffer(wiring.Component):
    """Hold one vector's gains and hand them out once per token: the gains of a NORM of
    the next LINEAR's output (``FLAG_NEXT``), read once before that LINEAR runs, while the
    memory port is still the NORM's.

    ``start`` (a strobe) empties the buffer for a vector of ``beats`` beats; ``fill``
    then stores beat after beat; once ``filled`` (all ``beats`` in), ``gains`` hands them
    out ``tokens`` times over, in order, a beat a cycle.

    Members
    -------
    start : ``In(1)``; beats : ``In(16)``; tokens : ``In(range(max_tokens + 1))``
        Sampled with ``start``.
    fill : ``In(stream.Signature(gain_beat_layout(lanes)))``
    filled : ``Out(1)``
    gains : ``Out(stream.Signature(gain_beat_layout(lanes)))``
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        layout = gain_beat_layout(config.lanes)
        super().__init__({
            "start": In(1), "beats": In(16), "tokens": In(range(config.max_tokens + 1)),
            "fill": In(stream.Signature(layout)),
            "filled": Out(1),
            "gains": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        depth = cfg.elementwise.max_features // cfg.lanes
        m.submodules.store = store = Memory(shape=self.fill.payload.shape(), depth=depth,
                                            init=[])
        write, read = store.write_port(), store.read_port()
        beats, tokens = Signal(16), Signal.like(self.tokens)
        stored = Signal(range(depth + 1))
        m.d.comb += [self.filled.eq(stored == beats), self.fill.ready.eq(~self.filled),
                     write.addr.eq(stored), write.data.eq(self.fill.payload),
                     write.en.eq(self.fill.valid & self.fill.ready)]
        with m.If(write.en):
            m.d.sync += stored.eq(stored + 1)

        # The replay: a read a cycle, its data valid the cycle after (as ChunkBuffer's).
        beat, token = Signal(16), Signal.like(tokens)
        advance, issue = Signal(), Signal()
        m.d.comb += [advance.eq(~self.gains.valid | self.gains.ready),
                     issue.eq(self.filled & (token != tokens) & advance),
                     read.addr.eq(beat), read.en.eq(advance),
                     self.gains.payload.eq(read.data)]
        with m.If(advance):
            m.d.sync += self.gains.valid.eq(issue)
        with m.If(issue):
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == beats - 1):
                m.d.sync += [beat.eq(0), token.eq(token + 1)]
        with m.If(self.start):
            m.d.sync += [beats.eq(self.beats), tokens.eq(self.tokens), stored.eq(0),
                         beat.eq(0), token.eq(0), self.gains.valid.eq(0)]
        return m


class CodesWriter(wiring.Component):
    """Store a norm's codes per token, padded with zeros to whole TLMM chunks, and its
    scales in a table by token.

    Token ``t``'s codes go to beats ``t * row .. `` of the codes buffer (``row`` =
    :func:`codes_row_beats`). ``done`` counts the tokens whose codes and scale are both in;
    ``restart`` clears it for the next norm.

    Members
    -------
    codes : ``In(stream.Signature(code_beat_layout(lanes)))``
    scale : ``In(stream.Signature(scale_layout))``
    restart : ``In(1)``
    write_addr, write_data, write_en : ``Out``
    token_scale : ``In(range(max_tokens))`` selects ``selected_scale`` (``Out(scale_layout)``).
    done : ``Out(range(max_tokens + 1))``
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        row = codes_row_beats(config)
        super().__init__({
            "codes": In(stream.Signature(code_beat_layout(config.lanes))),
            "scale": In(stream.Signature(scale_layout)),
            "restart": In(1),
            "write_addr": Out(range(config.max_tokens * row)),
            "write_data": Out(8 * config.lanes),
            "write_en": Out(1),
            "token_scale": In(range(config.max_tokens)),
            "selected_scale": Out(scale_layout),
            "done": Out(range(config.max_tokens + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        row, per_chunk = codes_row_beats(cfg), cfg.tlmm.k_per_word // cfg.lanes
        code_token = Signal(range(cfg.max_tokens + 1))
        scale_token = Signal(range(cfg.max_tokens + 1))
        beat = Signal(range(row + 1))
        phase = Signal(range(per_chunk))             # beat within the current chunk
        padding = Signal()
        scales = Array(Signal(scale_layout, name=f"scale_{t}") for t in range(cfg.max_tokens))
        take = self.codes.valid & self.codes.ready
        m.d.comb += [
            self.codes.ready.eq(~padding),
            self.scale.ready.eq(1),
            self.write_addr.eq(code_token * row + beat),
            self.write_data.eq(Mux(padding, 0, self.codes.payload.codes.as_value())),
            self.write_en.eq(take | padding),
            self.selected_scale.eq(scales[self.token_scale]),
            self.done.eq(Mux(code_token < scale_token, code_token, scale_token)),
        ]
        with m.If(take | padding):
            m.d.sync += [beat.eq(beat + 1), phase.eq(phase + 1)]
            with m.If(phase == per_chunk - 1):
                m.d.sync += phase.eq(0)
            ends_chunk = phase == per_chunk - 1
            with m.If(padding & ends_chunk | take & self.codes.payload.last & ends_chunk):
                m.d.sync += [padding.eq(0), beat.eq(0), phase.eq(0),
                             code_token.eq(code_token + 1)]
            with m.Elif(take & self.codes.payload.last):
                m.d.sync += padding.eq(1)
        with m.If(self.scale.valid):
            m.d.sync += [scales[scale_token].eq(self.scale.payload),
                         scale_token.eq(scale_token + 1)]
        with m.If(self.restart):
            m.d.sync += [code_token.eq(0), scale_token.eq(0)]
        return m


class CodesFeeder(wiring.Component):
    """Read the codes buffer in the engine's order: for each chunk, each token's
    ``group * tables`` codes as one activation beat.

    Members
    -------
    command : ``In(stream.Signature({chunks, tokens}))``
    read_addr, read_en : ``Out``; read_data : ``In(8 * lanes)``
    acts : ``Out(stream.Signature(act_beat_layout(tlmm)))``
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "command": In(stream.Signature(data.StructLayout({
                "chunks": unsigned(config.tlmm.max_chunks.bit_length()),
                "tokens": unsigned(config.max_tokens.bit_length())}))),
            **codes_read_members(config),
            "acts": Out(stream.Signature(act_beat_layout(config.tlmm))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        row, per_chunk = codes_row_beats(cfg), cfg.tlmm.k_per_word // cfg.lanes
        # At most two activation beats are ever in the queue or on their way into it. A
        # buffered queue refuses a write while its inner memory is full, even when its
        # level shows room (an entry moving to its output register), so it has a spare
        # entry: with one-beat chunks, a beat arriving every cycle, a queue of depth 2
        # dropped one (the timing is the same either way).
        m.submodules.queue = queue = SyncFIFOBuffered(width=8 * cfg.tlmm.k_per_word, depth=3)
        command = Signal.like(self.command.payload)
        chunk, token = Signal.like(command.chunks), Signal.like(command.tokens)
        part = Signal(range(per_chunk))              # word of the activation beat
        active, arriving, arriving_end = Signal(), Signal(), Signal()
        assembled = Signal(8 * cfg.tlmm.k_per_word)
        # Start an activation beat only when the queue will have room for it.
        room = queue.level + arriving_end < 2
        issue = active & ((part != 0) | room)
        m.d.comb += [
            self.command.ready.eq(~active),
            self.read_addr.eq(token * row + chunk * per_chunk + part), self.read_en.eq(issue),
            queue.w_data.eq(Cat(assembled[8 * cfg.lanes:], self.read_data)
                            if per_chunk > 1 else self.read_data),
            queue.w_en.eq(arriving_end),
            self.acts.valid.eq(queue.r_rdy), self.acts.payload.eq(queue.r_data),
            queue.r_en.eq(self.acts.ready),
        ]
        m.d.sync += [arriving.eq(issue), arriving_end.eq(issue & (part == per_chunk - 1))]
        with m.If(arriving):
            m.d.sync += assembled.eq(Cat(assembled[8 * cfg.lanes:], self.read_data))
        with m.If(self.command.valid & self.command.ready):
            m.d.sync += [command.eq(self.command.payload), chunk.eq(0), token.eq(0), part.eq(0),
                         active.eq(1)]
        with m.If(issue):
            m.d.sync += part.eq(part + 1)
            with m.If(part == per_chunk - 1):
                m.d.sync += [part.eq(0), token.eq(token + 1)]
                with m.If(token == command.tokens - 1):
                    m.d.sync += [token.eq(0), chunk.eq(chunk + 1)]
                    with m.If(chunk == command.chunks - 1):
                        m.d.sync += active.eq(0)
        return m
