"""The simulation bridge's chunk feeder under random gaps and back-pressure: every byte of
every chunk leaves once, in order, however full the chunks are."""

import random

import pytest

from tritium.sim.testing.amaranth_tb import run_simulation, stream_receive, stream_send
from tritium.sim.backend.harness import CHUNK_BYTES, ChunkFeeder


@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.6), (0.4, 0.4)])
def test_chunk_feeder_passes_every_byte_in_order(idle, stall):
    rng = random.Random(7)
    data = bytes(rng.randrange(256) for _ in range(300))
    sizes, start = [], 0
    while start < len(data):                 # chunks of 1 .. CHUNK_BYTES bytes
        sizes.append(min(rng.randint(1, CHUNK_BYTES), len(data) - start))
        start += sizes[-1]
    chunks, start = [], 0
    for size in sizes:
        chunks.append({"data": int.from_bytes(data[start:start + size], "little"),
                       "count": size})
        start += size
    dut = ChunkFeeder()
    received = []

    async def send(ctx):
        await stream_send(ctx, dut.chunks, chunks, random.Random(1), idle)

    async def receive(ctx):
        received.extend(await stream_receive(ctx, dut.bytes, len(data), random.Random(2),
                                             stall))

    run_simulation(dut, send, receive)
    assert bytes(int(b) for b in received) == data
