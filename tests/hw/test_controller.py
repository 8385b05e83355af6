# amaranth: UnusedElaboratable=no
"""The controller (amaranth.sim) runs a compiled model bit-exactly.

A random one-layer model of small shape, compiled by ``host.compiler`` for a design of
four lanes; two runs (3 prompt tokens, then 2 more continuing from the KV cache) must
leave the golden model's final hidden states in the io region, and with the head on
the device the golden model's top-k of each run's last token.
"""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritium.host.compiler import compile_model, decode_top, run_inputs
from tritium.host.model import Model
from tritium.hw.config import AcceleratorConfig, ModelConfig, TLMMConfig
from tritium.hw.control.controller import Controller
from tritium.hw.layouts import run_result_layout
from tritium.hw.memory import OnChipMemory
from tritium.hw.memory.mux import PortMux
from tritium.hw.memory.port import MemoryPortSignature
from tritium.sim.testing.amaranth_tb import run_simulation, stream_receive, stream_send
from tritium.sim.golden.model import GoldenModel, final_top


def small_design(embedding="device", embedding_bits=16, head="device", **fields):
    """A random one-layer model of small shape and a design built for it (4 lanes;
    ``fields`` of the design overridden)."""
    shape = ModelConfig(name="small", vocab_size=16, hidden=32, layers=1, heads=2, kv_heads=1,
                        head_dim=16, ffn=48, max_context=16)
    config = AcceleratorConfig(
        name="small", model=shape,
        **{"tlmm": TLMMConfig(group=3, tables=4, rows=4, tokens=4, max_k=48, max_n=48,
                              acc_width=16),
           "attention_lanes": 2, **fields}, memory_words=1024, max_payload=256,
        embedding=embedding, embedding_bits=embedding_bits, head=head)
    return Model.random(shape, seed=2), config


class ControllerBench(wiring.Component):
    """The controller and a host port sharing on-chip memory, as in the top."""

    def __init__(self, config, init):
        self._config, self._init = config, init
        super().__init__({"host": In(MemoryPortSignature(config.memory)),
                          "run": In(stream.Signature(8)),
                          "finished": Out(stream.Signature(run_result_layout())),
                          "position": In(32), "tokens": In(32), "program": In(32),
                          "cycles": Out(32)})

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.controller = controller = Controller(cfg)
        m.submodules.ports = ports = PortMux(cfg.memory, ("host", "controller"))
        m.submodules.memory = memory = OnChipMemory(cfg.memory, cfg.memory_words, self._init)
        wiring.connect(m, wiring.flipped(self.host), ports.host)
        wiring.connect(m, controller.memory, ports.controller)
        wiring.connect(m, ports.memory, memory.port)
        wiring.connect(m, wiring.flipped(self.run), controller.run)
        wiring.connect(m, controller.finished, wiring.flipped(self.finished))
        m.d.comb += [ports.select.eq(controller.busy), self.cycles.eq(controller.cycles)]
        for name in ("position", "tokens", "program"):
            m.d.comb += getattr(controller, name).eq(getattr(self, name))
        m.d.comb += controller.steps.eq(1)          # a step a run (test_sequencer: more)
        return m


def words(data: bytes, word_bytes: int) -> list:
    data += bytes(-len(data) % word_bytes)
    return [int.from_bytes(data[i:i + word_bytes], "little") for i in range(0, len(data), word_bytes)]


# As the kv260 preset: one attention lane twice as wide as the vectors, RoPE's table
# in memory.
KV260_LIKE = {"attention_lanes": 1, "attention_dims": 8, "rope_table": "memory"}
# An engine of 8 rows behind vectors of 4 lanes: each result beat leaves in two.
WIDE_ENGINE = {"vector_lanes": 4, "tlmm": TLMMConfig(group=3, tables=4, rows=8, tokens=4,
                                                     max_k=48, max_n=48, acc_width=16)}


@pytest.mark.parametrize("embedding, bits, head, fields", [
    ("device", 16, "device", {}), ("device", 32, "host", {}), ("host", 16, "device", {}),
    ("device", 16, "device", KV260_LIKE), ("device", 16, "device", WIDE_ENGINE)],
    ids=["16", "32-host-head", "host-embedding", "kv260-like", "rows-wider-than-lanes"])
def test_controller_runs_a_compiled_layer(embedding, bits, head, fields):
    """Two runs of a compiled one-layer model, the inputs token ids (EMBED looks up their
    rows in a 16- or 32-bit table) or embedding vectors, against the golden model's
    hidden states and, with the head on the device, its top-k (HEAD); also with the
    kv260 preset's attention arrangement and with an engine twice as wide as the
    vectors."""
    model, config = small_design(embedding, bits, head, **fields)
    compiled = compile_model(model, config)
    word_bytes = config.data_width // 8
    init = [0] * config.memory_words
    for address, data in compiled.image:
        for i, word in enumerate(words(data, word_bytes)):
            init[address + i] = word
    dut = ControllerBench(config, init)
    golden = GoldenModel(model)
    cache = golden.new_cache()
    runs = [(0, [7, 1, 13]), (3, [10, 2])]
    expected = [golden.forward_hidden(ids, cache) for _, ids in runs]
    hidden_words = config.model.hidden // config.lanes
    got, tops, status = [], [], []

    async def bench(ctx):
        ctx.set(dut.program, compiled.program_address)
        for position, ids in runs:
            emb = words(run_inputs(model, config, ids), word_bytes)
            await stream_send(ctx, dut.host.write_cmd, [{"addr": compiled.io_address,
                                                          "words": len(emb)}])
            await stream_send(ctx, dut.host.write_data, emb)
            await stream_receive(ctx, dut.host.write_done, 1)
            ctx.set(dut.position, position)
            ctx.set(dut.tokens, len(ids))
            await stream_send(ctx, dut.run, [0])
            status.extend(f.status for f in await stream_receive(ctx, dut.finished, 1))
            await stream_send(ctx, dut.host.read_cmd, [{"addr": compiled.states_address,
                                                         "words": len(ids) * hidden_words}])
            beats = await stream_receive(ctx, dut.host.read_data, len(ids) * hidden_words)
            raw = b"".join(int(b.data).to_bytes(word_bytes, "little") for b in beats)
            got.append(np.frombuffer(raw, dtype="<i4").reshape(len(ids), -1).astype(np.int64))
            if compiled.top_address is not None:
                await stream_send(ctx, dut.host.read_cmd, [{"addr": compiled.top_address,
                                                             "words": config.head_k}])
                beats = await stream_receive(ctx, dut.host.read_data, config.head_k)
                tops.append(decode_top(b"".join(int(b.data).to_bytes(word_bytes, "little")
                                                for b in beats), config))

    run_simulation(dut, bench, deadline=2e-4)           # 20,000 cycles
    assert status == [0, 0]
    for run, (have, want) in enumerate(zip(got, expected)):
        assert np.array_equal(have, want), f"run {run}: {np.argwhere(have != want)[:5]}"
    assert len(tops) == (len(runs) if head == "device" else 0)
    for run, ((indices, scores), want) in enumerate(zip(tops, expected)):
        best, best_scores = final_top(golden.qmodel, want, config.head_k)
        assert np.array_equal(indices, best), f"run {run}: rows {indices} != {best}"
        assert np.array_equal(scores, best_scores), f"run {run}: {scores} != {best_scores}"
