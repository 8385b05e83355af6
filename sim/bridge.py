"""cocotb test module: the simulated accelerator's host link on a TCP socket.

Run inside the simulator by :class:`tritium.host.transports.SimTransport`. It connects
to ``127.0.0.1:$TRITIUM_BRIDGE_PORT`` and, for every frame the host sends, feeds the
frame's bytes into the top's ``rx`` stream one per cycle and returns the bytes of
``tx`` until the reply's closing ``END``. The host link is stop-and-wait, so between a
reply and the next frame nothing happens in the design, and the simulation waits on
the socket without advancing time. The clock runs in C++ (DESIGN.md section 6).
"""

import os
import socket

import cocotb
from cocotb.triggers import RisingEdge

from tritium.hw.link.protocol import END
from .cocotb_tb import reset, start_clock

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


async def _send(dut, data: bytes):
    for byte in data:
        dut.rx__valid.value = 1
        dut.rx__payload.value = byte
        await RisingEdge(dut.clk)
        while not dut.rx__ready.value:
            await RisingEdge(dut.clk)
    dut.rx__valid.value = 0


async def _receive_reply(dut) -> bytes:
    """tx bytes until an END that closes a non-empty frame."""
    reply = bytearray()
    while True:
        await RisingEdge(dut.clk)
        if dut.tx__valid.value:
            byte = int(dut.tx__payload.value)
            reply.append(byte)
            if byte == END and reply.strip(bytes([END])):
                return bytes(reply)
        else:
            await RisingEdge(dut.tx__valid)


@cocotb.test()
async def serve(dut):
    start_clock(dut)
    dut.rx__valid.value = 0
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
