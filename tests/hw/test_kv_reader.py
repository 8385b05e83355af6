# amaranth: UnusedElaboratable=no
"""The KV reader (amaranth.sim) through ports 1, 2 and 4 bus words wide, where a record
of 3 bus words ends on a port word, straddles two or starts inside one: every pass's
key beats, in order, under random memory gaps and core back-pressure."""

import random

import numpy as np
import pytest

from tritium.hw.attention.kvcache import KVLayout, KVReader
from tritium.hw.config import AttentionConfig
from tritium.hw.memory.port import MemoryConfig
from tritium.sim.golden.model import GoldenCache
from tritium.sim.testing.amaranth_tb import TRAFFIC, run_simulation, stream_receive, stream_send
from tritium.sim.testing.attention_tb import cache_image, fill_cache, key_beats, model_shape

CONFIG = AttentionConfig(head_dim=8, heads=4, kv_heads=2, layers=2, capacity=16,
                         dims_per_cycle=4)
MEMORY = MemoryConfig(data_width=64, addr_width=12)
# (layer, kv head, keys): passes of odd and even counts, a single key, the whole cache.
PASSES = [(0, 1, 5), (1, 0, 1), (1, 1, 16), (0, 0, 2), (0, 1, 7), (1, 1, 3), (0, 0, 16)]


def port_words(layout: KVLayout, images) -> dict:
    """The memory as the reader's port sees it: port word address -> value."""
    unit = layout.memory.bytes_per_word
    bus = {}
    for address, image in images:
        for index in range(len(image) // unit):
            bus[address + index] = int.from_bytes(image[index * unit:(index + 1) * unit],
                                                  "little")
    words = {}
    for address, value in bus.items():
        port, part = divmod(address, layout.align)
        words[port] = words.get(port, 0) | value << (part * layout.memory.data_width)
    return words


@pytest.mark.parametrize("align", [1, 2, 4])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=repr)
def test_reader_passes(align, traffic):
    layout = KVLayout(CONFIG, MEMORY, base=8, align=align)
    assert layout.words_per_record == 3
    assert layout.record_offsets() == {1: (0,), 2: (0, 1), 4: (0, 3, 2, 1)}[align]
    rng = np.random.default_rng(align)
    cache = GoldenCache(model_shape(CONFIG))
    images = []
    for layer in range(CONFIG.layers):
        fill_cache(cache, rng, layer, CONFIG.capacity)
        images += cache_image(cache, layout, layer, CONFIG.capacity)
    words = port_words(layout, images)
    expected = [beat for layer, kv_head, count in PASSES
                for beat in key_beats(cache, CONFIG, layer, kv_head, count)]
    dut = KVReader(layout, burst=4)
    seed = 10 * align + [t.name for t in TRAFFIC].index(traffic.name)
    received = []

    async def send_passes(ctx):
        await stream_send(ctx, dut.passes, [{"layer": layer, "kv_head": kv_head, "count": count}
                                            for layer, kv_head, count in PASSES],
                          random.Random(seed), traffic.idle)

    async def memory(ctx):
        rng = random.Random(seed + 1)
        while True:
            command = (await stream_receive(ctx, dut.read_cmd, 1))[0]
            count = command.words
            await stream_send(ctx, dut.read_data,
                              [{"data": words.get(command.addr + i, 0), "last": i == count - 1}
                               for i in range(count)], rng, traffic.idle)

    async def receive(ctx):
        beats = await stream_receive(ctx, dut.keys, len(expected), random.Random(seed + 2),
                                     traffic.stall)
        received.extend({"k": [int(v) for v in b.k], "v": [int(v) for v in b.v],
                         "k_scale": {"m": int(b.k_scale.m), "e": int(b.k_scale.e)},
                         "v_scale": {"m": int(b.v_scale.m), "e": int(b.v_scale.e)},
                         "index": int(b.index), "last": int(b.last)} for b in beats)

    run_simulation(dut, send_passes, receive, background=[memory])
    assert received == expected


def test_regions_start_on_port_words():
    """Each (layer, kv head)'s records start on a word of the reading port: 16 records of
    3 words take 48 bus words, a multiple of 2 and 4; 5 of them 15, rounded up to 16."""
    for align, capacity, region in ((2, 16, 48), (4, 16, 48), (2, 5, 16), (4, 5, 16), (1, 5, 15)):
        config = AttentionConfig(head_dim=8, heads=4, kv_heads=2, layers=2, capacity=capacity,
                                 dims_per_cycle=4)
        layout = KVLayout(config, MEMORY, base=16, align=align)
        assert layout.region_words == region
        assert layout.address(1, 1, 0) % align == 0
        assert layout.words == 4 * region
        assert layout.port_words(capacity) == -(-capacity * 3 // align)
