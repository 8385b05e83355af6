"""cocotb test module: the simulated accelerator's host link on a TCP socket.

Run inside the simulator by :class:`tritium.host.transports.SimTransport`. It connects
to ``127.0.0.1:$TRITIUM_BRIDGE_PORT`` and, for every frame the host sends, feeds the
frame's bytes into the top (a :class:`~tritium.sim.harness.SimTop`) in chunks that
enter the link one byte per cycle, and returns the bytes of ``tx`` until the reply's
closing ``END``. The host link is stop-and-wait, so between a
reply and the next frame nothing happens in the design, and the simulation waits on
the socket without advancing time. The clock runs in C++ (DESIGN.md section 6).
"""

import os
import socket

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from tritium.hw.link.protocol import END
from .clocking import reset, start_clock
from .harness import CHUNK_BYTES

__all__ = ["serve"]


def _read_frame(connection, pending: bytearray) -> bytes:
    """Bytes from the socket up to and including the END closing a non-empty frame;
    b"" when the host has closed the connection."""
    while True:
        start = 0
        while True:
            end = pending.find(bytes([END]), start)
            if end < 0:
                break
            if pending[:end].strip(bytes([END])):
                frame = bytes(pending[:end + 1])
                del pending[:end + 1]
                return frame
            start = end + 1
        chunk = connection.recv(65536)
        if not chunk:
            return b""
        pending += chunk


# Both directions look at the design at falling edges, where everything has settled:
# the design changes only after rising edges, so what is seen there is what the next
# rising edge transfers, whatever the simulator shows right at a rising edge.

async def _send(dut, data: bytes):
    """Hand ``data`` to the top in chunks (``SimTop.rx_chunks``): a few Python steps per
    chunk, while the chunk's bytes enter the link one per cycle in the simulator."""
    for start in range(0, len(data), CHUNK_BYTES):
        chunk = data[start:start + CHUNK_BYTES]
        await FallingEdge(dut.clk)
        while not dut.rx_chunks__ready.value:
            await RisingEdge(dut.rx_chunks__ready)
            await FallingEdge(dut.clk)
        dut.rx_chunks__payload.value = int.from_bytes(chunk, "little") | (
            len(chunk) << (8 * CHUNK_BYTES))
        dut.rx_chunks__valid.value = 1
        await RisingEdge(dut.clk)                 # ready was high: the chunk is taken
        dut.rx_chunks__valid.value = 0


async def _receive_reply(dut) -> bytes:
    """tx bytes (``ready`` is always high) until an END that closes a non-empty frame."""
    reply = bytearray()
    while True:
        await FallingEdge(dut.clk)
        if dut.tx__valid.value:
            byte = int(dut.tx__payload.value)
            reply.append(byte)
            if byte == END and reply.strip(bytes([END])):
                await RisingEdge(dut.clk)         # the END's own transfer
                return bytes(reply)
        else:
            await RisingEdge(dut.tx__valid)


@cocotb.test()
async def serve(dut):
    start_clock(dut)
    dut.rx_chunks__valid.value = 0
    dut.tx__ready.value = 1
    await reset(dut)
    connection = socket.create_connection(("127.0.0.1", int(os.environ["TRITIUM_BRIDGE_PORT"])))
    pending = bytearray()
    with connection:
        while True:
            frame = _read_frame(connection, pending)
            if not frame:
                break
            receiver = cocotb.start_soon(_receive_reply(dut))
            await _send(dut, frame)
            connection.sendall(await receiver)
