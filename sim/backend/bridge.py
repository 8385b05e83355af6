"""cocotb test module: the simulated accelerator's host link on a TCP socket.

Run inside the simulator by :class:`tritium.host.transports.SimTransport`. It connects
to ``127.0.0.1:$TRITIUM_BRIDGE_PORT`` and, for every frame the host sends, feeds the
frame's bytes into the top (a :class:`~tritium.sim.backend.harness.SimTop`) in chunks that
enter the link one byte per cycle, and returns the bytes of ``tx`` until the reply's
closing ``END``. The host link is stop-and-wait, so between a
reply and the next frame nothing happens in the design, and the simulation waits on
the socket without advancing time. The clock runs in C++.

With ``TRITIUM_BACKDOOR`` set to the number of memory ports (a
:class:`~tritium.sim.backend.harness.BoardSimTop`), a second
connection to the same port carries the simulation's own requests, one line each,
answered with one line of JSON:

- ``load``: pulse ``backdoor_load`` for one cycle, so the board memory reads the image
  file the transport wrote (``+tritium_memory_image=PATH``); answers ``{"loaded": true}``;
- ``counters``: the board memory's words per port since reset; answers
  ``{"read_words": [...], "written_words": [...]}``.
"""

import json
import os
import select
import socket

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from tritium.hw.link.protocol import END, ESC, ESC_END, ESC_ESC
from .clocking import reset, start_clock
from .harness import CHUNK_BYTES

__all__ = ["serve"]


def _data_bytes(line: bytes) -> int:
    """The frame bytes that SLIP line bytes (without END) decode to, as the gateware's
    ``SlipDecoder`` counts them: an ESC and the byte after it are one byte if that byte
    is ESC_END or ESC_ESC and none otherwise, and a trailing ESC is none."""
    count, escaped = 0, False
    for byte in line:
        if escaped:
            count += byte in (ESC_END, ESC_ESC)
            escaped = False
        elif byte == ESC:
            escaped = True
        else:
            count += 1
    return count


def _take_frame(pending: bytearray) -> bytes:
    """Remove and return the bytes up to and including the END closing a frame that
    holds at least one byte from ``pending``; None while no such frame is complete.
    Frames of no bytes (noise such as ``ESC END``) are dropped: the device ignores them
    and sends no reply, so the bridge must not wait for one."""
    start = 0
    while True:
        end = pending.find(bytes([END]), start)
        if end < 0:
            return None
        if _data_bytes(pending[start:end]):
            frame = bytes(pending[:end + 1])
            del pending[:end + 1]
            return frame
        start = end + 1


def _take_line(pending: bytearray) -> str:
    """Remove and return the first complete line of ``pending``; None if there is none."""
    end = pending.find(b"\n")
    if end < 0:
        return None
    line = bytes(pending[:end]).decode().strip()
    del pending[:end + 1]
    return line


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


async def _backdoor(dut, request: str) -> dict:
    """Answer one request of the backdoor connection (see the module docstring)."""
    if request == "load":
        await FallingEdge(dut.clk)
        dut.backdoor_load.value = 1
        await FallingEdge(dut.clk)
        dut.backdoor_load.value = 0
        return {"loaded": True}
    if request == "counters":
        ports = int(os.environ["TRITIUM_BACKDOOR"])
        words = {name: [int(getattr(dut, f"{name}__{i}").value) for i in range(ports)]
                 for name in ("read_words", "written_words")}
        return words
    return {"error": f"unknown backdoor request {request!r}"}


@cocotb.test()
async def serve(dut):
    start_clock(dut)
    dut.rx_chunks__valid.value = 0
    dut.tx__ready.value = 1
    if "TRITIUM_BACKDOOR" in os.environ:
        dut.backdoor_load.value = 0
    await reset(dut)
    address = ("127.0.0.1", int(os.environ["TRITIUM_BRIDGE_PORT"]))
    link = socket.create_connection(address)
    control = socket.create_connection(address) if "TRITIUM_BACKDOOR" in os.environ else None
    pending = {link: bytearray(), control: bytearray()}
    with link:
        while True:
            frame = _take_frame(pending[link])
            if frame:
                receiver = cocotb.start_soon(_receive_reply(dut))
                await _send(dut, frame)
                link.sendall(await receiver)
                continue
            request = _take_line(pending[control]) if control else None
            if request:
                control.sendall(json.dumps(await _backdoor(dut, request)).encode() + b"\n")
                continue
            # Nothing to do: wait for either connection without advancing time.
            readable, _, _ = select.select([sock for sock in pending if sock], [], [])
            for sock in readable:
                chunk = sock.recv(65536)
                if not chunk:
                    if control:
                        control.close()
                    return
                pending[sock] += chunk
