"""Moving token vectors between the scratchpad and the units as streams of beats."""

from amaranth import Cat, Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..layouts import vector_beat_layout

__all__ = ["vector_command_layout", "VectorReader", "VectorWriter"]


def vector_command_layout(depth: int, max_tokens: int) -> data.StructLayout:
    """``tokens`` vectors of ``beats`` beats, token t's from ``base + t * stride``."""
    address = unsigned(max(1, (depth - 1).bit_length()))
    return data.StructLayout({"base": address, "stride": address, "beats": address,
                              "tokens": unsigned(max_tokens.bit_length())})


class VectorReader(wiring.Component):
    """Read the vectors of a command from a memory with one cycle of read latency.

    Beats leave in order, ``last`` on each vector's final beat. Reads are issued only
    while the output FIFO has room for them, so back-pressure never loses a word, and
    a beat per cycle flows when nobody stalls.

    Members
    -------
    command : ``In(stream.Signature(vector_command_layout(depth, max_tokens)))``
    read_addr, read_en : ``Out``
    read_data : ``In(32 * lanes)``
    beats : ``Out(stream.Signature(vector_beat_layout(lanes)))``
    """

    def __init__(self, lanes: int, depth: int, max_tokens: int):
        self._lanes, self._depth = lanes, depth
        super().__init__({
            "command": In(stream.Signature(vector_command_layout(depth, max_tokens))),
            "read_addr": Out(range(depth)),
            "read_en": Out(1),
            "read_data": In(32 * lanes),
            "beats": Out(stream.Signature(vector_beat_layout(self._lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = SyncFIFOBuffered(
            width=vector_beat_layout(self._lanes).size, depth=4)
        in_flight, in_flight_last = Signal(), Signal()
        # Issue while the FIFO has a place for this read besides the one in flight: a
        # beat takes 4 cycles from issue to leaving, so 4 places keep a beat a cycle (one
        # place kept free, as before issue 18, gave 3 beats per 4 cycles).
        room = queue.level + in_flight < queue.depth
        issue = Signal()
        address, last_beat, active = _walk(m, self.command, issue)
        m.d.comb += [
            issue.eq(active & room),
            self.read_addr.eq(address), self.read_en.eq(issue),
            queue.w_en.eq(in_flight),
            queue.w_data.eq(Cat(self.read_data, in_flight_last)),   # vector_beat_layout
            self.beats.valid.eq(queue.r_rdy), self.beats.payload.eq(queue.r_data),
            queue.r_en.eq(self.beats.ready),
        ]
        m.d.sync += [in_flight.eq(issue), in_flight_last.eq(issue & last_beat)]
        return m


class VectorWriter(wiring.Component):
    """Write the beats of a command's vectors to a memory; ``idle`` once all are in.

    ``last`` of the incoming beats is not used: the command says how long each vector
    is. ``idle`` falls the cycle after a command is taken.

    Members
    -------
    command : ``In(stream.Signature(vector_command_layout(depth, max_tokens)))``
    beats : ``In(stream.Signature(vector_beat_layout(lanes)))``
    write_addr, write_data, write_en : ``Out``
    idle : ``Out(1)``
    """

    def __init__(self, lanes: int, depth: int, max_tokens: int):
        self._lanes, self._depth = lanes, depth
        super().__init__({
            "command": In(stream.Signature(vector_command_layout(depth, max_tokens))),
            "beats": In(stream.Signature(vector_beat_layout(lanes))),
            "write_addr": Out(range(depth)),
            "write_data": Out(32 * lanes),
            "write_en": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        take = Signal()
        address, _, active = _walk(m, self.command, take)
        m.d.comb += [
            take.eq(self.beats.valid & self.beats.ready),
            self.idle.eq(~active), self.beats.ready.eq(active),
            self.write_addr.eq(address), self.write_en.eq(take),
            self.write_data.eq(self.beats.payload.values.as_value()),
        ]
        return m


def _walk(m, command_stream, step):
    """Walk a command's beats: returns (address, last beat of a vector, active). Takes a
    command while inactive; ``step`` moves to the next beat. The last-beat and
    last-token flags are registers kept in step with the counters, so ``step`` (which
    may come from a consumer's ``ready``) meets no comparator on its way to them."""
    command = Signal.like(command_stream.payload)
    row = Signal.like(command.base)             # the current token's first beat
    beat, token = Signal.like(command.beats), Signal.like(command.tokens)
    active, last_beat, last_token = Signal(), Signal(), Signal()
    m.d.comb += command_stream.ready.eq(~active)
    with m.If(command_stream.valid & command_stream.ready):
        payload = command_stream.payload
        m.d.sync += [command.eq(payload), row.eq(payload.base), beat.eq(0), token.eq(0),
                     active.eq((payload.tokens != 0) & (payload.beats != 0)),
                     last_beat.eq(payload.beats == 1), last_token.eq(payload.tokens == 1)]
    with m.If(step):
        m.d.sync += [beat.eq(beat + 1), last_beat.eq(beat + 2 == command.beats)]
        with m.If(last_beat):
            m.d.sync += [beat.eq(0), last_beat.eq(command.beats == 1),
                         token.eq(token + 1), last_token.eq(token + 2 == command.tokens),
                         row.eq(row + command.stride)]
            with m.If(last_token):
                m.d.sync += active.eq(0)
    return row + beat, last_beat, active
