"""EMBED: the embedding rows of the run's token ids, read from memory and widened to the
residual stream's beats (docs/program.md)."""

from amaranth import Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..layouts import vector_beat_layout
from ..memory.port import command_layout, read_data_layout

__all__ = ["embed_job_layout", "EmbedFetcher", "HalfWordWidener"]


def embed_job_layout(config: AcceleratorConfig) -> data.StructLayout:
    """The table's word address, a row's memory words and the run's tokens."""
    return data.StructLayout({"base": unsigned(config.memory.addr_width),
                              "words": unsigned(16),
                              "tokens": unsigned(config.max_tokens.bit_length())})


class EmbedFetcher(wiring.Component):
    """For each of a job's tokens, take its id and read its row of the embedding table.

    A token's id is lane 0 of one beat on ``ids`` (the scratchpad beat the run's LOAD
    put it in; the other lanes are ignored). Its row is the ``words`` memory words from
    ``base + id * words``: one read command per token on ``read_cmd``. The rows' words
    come back on the memory port in command order and go to the scratchpad writer (the
    datapath connects them, through a :class:`HalfWordWidener` for a 16-bit table), so
    this unit never waits for them: the next token's read is issued while the previous
    row streams.

    The id is used modulo ``2 ** config.id_bits`` (enough for ``vocab_size`` ids); the host
    never sends an id outside the vocabulary (``tritium.host.runtime.check_token_ids``).
    Per token: a cycle to take the id, one to form the address (registered, so the
    multiply has a cycle of its own), then the command until the memory takes it.

    Members
    -------
    job : ``In(stream.Signature(embed_job_layout(config)))``
    ids : ``In(stream.Signature(vector_beat_layout(lanes)))``
    read_cmd : ``Out(stream.Signature(command_layout(config.memory)))``
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        super().__init__({
            "job": In(stream.Signature(embed_job_layout(config))),
            "ids": In(stream.Signature(vector_beat_layout(config.lanes))),
            "read_cmd": Out(stream.Signature(command_layout(config.memory))),
        })

    def elaborate(self, platform):
        m = Module()
        job = Signal.like(self.job.payload)
        token_id = Signal(self._config.id_bits)
        left = Signal.like(job.tokens)          # tokens whose read is still to issue
        command = self.read_cmd
        with m.FSM():
            with m.State("idle"):
                m.d.comb += self.job.ready.eq(1)
                with m.If(self.job.valid & (self.job.payload.tokens != 0)):
                    m.d.sync += [job.eq(self.job.payload), left.eq(self.job.payload.tokens)]
                    m.next = "id"
            with m.State("id"):
                m.d.comb += self.ids.ready.eq(1)
                with m.If(self.ids.valid):
                    m.d.sync += token_id.eq(self.ids.payload.values[0])
                    m.next = "address"
            with m.State("address"):
                m.d.sync += [command.payload.addr.eq(job.base + token_id * job.words),
                             command.payload.words.eq(job.words)]
                m.next = "command"
            with m.State("command"):
                m.d.comb += command.valid.eq(1)
                with m.If(command.ready):
                    m.d.sync += left.eq(left - 1)
                    m.next = "id"
                    with m.If(left == 1):
                        m.next = "idle"
        return m


class HalfWordWidener(wiring.Component):
    """A 16-bit embedding table's memory words as the residual stream's beats.

    Each word holds ``2 * lanes`` int16 values, Q3.12: two beats of ``lanes`` int32
    Q19.12 values, the low half first, each value sign-extended (the same number, so
    the lookup is exact). A word is taken once its second beat is taken, so
    back-pressure on ``beats`` never loses a value.

    Members
    -------
    words : ``In(stream.Signature(read_data_layout(memory)))``
    beats : ``Out(stream.Signature(vector_beat_layout(lanes)))`` (``last`` unused: 0)
    """

    def __init__(self, config: AcceleratorConfig):
        self._lanes = config.lanes
        super().__init__({
            "words": In(stream.Signature(read_data_layout(config.memory))),
            "beats": Out(stream.Signature(vector_beat_layout(config.lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        high = Signal()                 # the word's second beat is next
        word = self.words.payload.data
        half = word.word_select(high, 16 * lanes)
        m.d.comb += [self.beats.valid.eq(self.words.valid),
                     self.words.ready.eq(self.beats.ready & high)]
        m.d.comb += [self.beats.payload.values[i].eq(half.word_select(i, 16).as_signed())
                     for i in range(lanes)]
        with m.If(self.beats.valid & self.beats.ready):
            m.d.sync += high.eq(~high)
        return m
