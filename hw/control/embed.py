"""EMBED's address generator: the embedding rows of the run's token ids (docs/program.md)."""

from amaranth import Module, Signal
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..layouts import vector_beat_layout
from ..memory.port import command_layout

__all__ = ["embed_job_layout", "EmbedFetcher"]


def embed_job_layout(config: AcceleratorConfig) -> data.StructLayout:
    """The table's word address, a row's beats (= words) and the run's tokens."""
    return data.StructLayout({"base": unsigned(config.memory.addr_width),
                              "beats": unsigned(16),
                              "tokens": unsigned(config.max_tokens.bit_length())})


class EmbedFetcher(wiring.Component):
    """For each of a job's tokens, take its id and read its row of the embedding table.

    A token's id is lane 0 of one beat on ``ids`` (the scratchpad beat the run's LOAD
    put it in; the other lanes are ignored). Its row is the ``beats`` memory words from
    ``base + id * beats``: one read command per token on ``read_cmd``. The rows' words
    come back on the memory port in command order and go straight to the scratchpad
    writer (the datapath connects them), so this unit never waits for them: the next
    token's read is issued while the previous row streams.

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
                m.d.sync += [command.payload.addr.eq(job.base + token_id * job.beats),
                             command.payload.words.eq(job.beats)]
                m.next = "command"
            with m.State("command"):
                m.d.comb += command.valid.eq(1)
                with m.If(command.ready):
                    m.d.sync += left.eq(left - 1)
                    m.next = "id"
                    with m.If(left == 1):
                        m.next = "idle"
        return m
