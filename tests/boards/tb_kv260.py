"""cocotb testbench (tier 2) for the KV260 board top: the ``zynq`` transport's register
protocol over AXI-Lite, with PS DDR modelled by cocotbext-axi's ``AxiRam``.

Run by ``tests/boards/test_kv260.py``, which builds ``KV260Top`` for a config and
passes the config and the buffer's base address in ``KV260_TB_SETTINGS``. The host side
is the real :class:`~tritium.host.zynq_transport.ZynqTransport` and
:class:`~tritium.host.link.LinkClient`, running in a cocotb bridge thread: its
``read32``/``write32`` are AXI-Lite transactions of ``AxiLiteMaster`` on ``s_axi_lite``
(:class:`SimRegisters`), its DDR buffer is the ``AxiRam`` on ``m_axi`` (:class:`SimBuffer`);
a design on several HP ports has an ``AxiRam`` on each master, all on one memory.
"""

import dataclasses
import json
import logging
import os
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp

from tritium.boards.kv260 import axi_names
from tritium.hw.link import window_map as reg
from tritium.host.errors import TritiumError
from tritium.host.link import DeviceError, FrameDecoder, LinkClient, encode_frame, parse_frame
from tritium.host.zynq_transport import Buffer, Registers, ZynqTransport
from tritium.hw.config import AcceleratorConfig
from tritium.hw.control.isa import REGISTERS
from tritium.hw.link import protocol as p


def settings():
    values = json.loads(os.environ["KV260_TB_SETTINGS"])
    return AcceleratorConfig.from_json(values["config"]), values["base"]


class SimRegisters(Registers):
    """The window's registers as AXI-Lite transactions; called from a bridge thread."""

    def __init__(self, master: AxiLiteMaster):
        self.master = master
        self.accesses = 0

    async def _read(self, offset):
        response = await self.master.read(offset, 4)
        assert response.resp == AxiResp.OKAY, f"read of 0x{offset:x} answered {response.resp}"
        return int.from_bytes(response.data, "little")

    async def _write(self, offset, value):
        response = await self.master.write(offset, value.to_bytes(4, "little"))
        assert response.resp == AxiResp.OKAY, f"write of 0x{offset:x} answered {response.resp}"

    def read32(self, offset: int) -> int:
        self.accesses += 1
        return resume(self._read)(offset)

    def write32(self, offset: int, value: int) -> None:
        self.accesses += 1
        resume(self._write)(offset, value)


class SimBuffer(Buffer):
    """The buffer at ``physical_address`` in the AxiRam (a stand-in for PS DDR)."""

    def __init__(self, ram: AxiRam, physical_address: int, size: int):
        self.ram, self.physical_address, self.size = ram, physical_address, size

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self.ram.write(self.physical_address + offset, bytes(data))

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self.ram.read(self.physical_address + offset, length))


class KV260TB:
    """Clock, reset, the AXI-Lite master on ``s_axi_lite`` and an AxiRam on each AXI4
    master (``m_axi``, ``m_axi1``, ...), all on the first one's memory."""

    def __init__(self, dut):
        self.dut = dut
        self.config, self.base = settings()
        Clock(dut.aclk, 10, unit="ns").start()
        self.rams = []
        for name in axi_names(self.config):
            self.rams.append(AxiRam(AxiBus.from_prefix(dut, name, bus_separator="__"), dut.aclk,
                                    dut.aresetn, reset_active_level=False,
                                    size=2 ** reg.BASE_ADDRESS_BITS,
                                    mem=self.rams[0].mem if self.rams else None))
        self.ram = self.rams[0]
        # Read bursts each master issues (its AR handshakes).
        self.bursts = {name: 0 for name in axi_names(self.config)}
        for name in self.bursts:
            cocotb.start_soon(self._count_bursts(name))
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_lite", bus_separator="__"),
                                  dut.aclk, dut.aresetn, reset_active_level=False)
        for bfm in [self.lite.read_if, self.lite.write_if,
                    *(bfm for ram in self.rams for bfm in (ram.read_if, ram.write_if))]:
            bfm.log.setLevel(logging.WARNING)
        self.registers = SimRegisters(self.lite)

    async def _count_bursts(self, name):
        valid, ready = getattr(self.dut, f"{name}__arvalid"), getattr(self.dut, f"{name}__arready")
        while True:
            await RisingEdge(self.dut.aclk)
            if valid.value and ready.value:
                self.bursts[name] += 1

    async def reset(self):
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, 4)
        self.dut.aresetn.value = 1
        await ClockCycles(self.dut.aclk, 2)

    async def read(self, name_or_offset):
        offset = reg.REGISTERS.get(name_or_offset, name_or_offset)
        response = await self.lite.read(offset, 4)
        return int.from_bytes(response.data, "little"), response.resp

    async def write(self, name_or_offset, value):
        offset = reg.REGISTERS.get(name_or_offset, name_or_offset)
        return (await self.lite.write(offset, value.to_bytes(4, "little"))).resp


@cocotb.test()
async def window_registers(dut):
    """Identification, the base registers' writable bits, SLVERR for offsets that name
    no register, and the transport's checks of the window."""
    tb = KV260TB(dut)
    await tb.reset()
    assert await tb.read("magic") == (reg.WINDOW_MAGIC, AxiResp.OKAY)
    assert await tb.read("version") == (reg.WINDOW_VERSION, AxiResp.OKAY)
    assert await tb.read("design") == (tb.config.design_id, AxiResp.OKAY)
    status, _ = await tb.read("status")
    assert status == reg.STATUS_TX_READY                  # room to send, nothing received
    space, _ = await tb.read("tx_space")
    assert space > 0
    assert await tb.read("rx_data") == (0, AxiResp.OKAY)     # empty: the valid bit is 0

    assert await tb.write("base_lo", 0xFFFF_FFFF) == AxiResp.OKAY
    assert await tb.write("base_hi", 0xFFFF_FFFF) == AxiResp.OKAY
    assert await tb.read("base_lo") == (0xFFFF_F000, AxiResp.OKAY)
    assert await tb.read("base_hi") == (2 ** (reg.BASE_ADDRESS_BITS - 32) - 1, AxiResp.OKAY)
    assert await tb.write("magic", 0) == AxiResp.OKAY              # read-only: ignored
    assert await tb.read("magic") == (reg.WINDOW_MAGIC, AxiResp.OKAY)
    for offset in (0x28, 0x40, 0xFFC):
        assert (await tb.read(offset))[1] == AxiResp.SLVERR
        assert await tb.write(offset, 1) == AxiResp.SLVERR

    def host():
        transport = ZynqTransport(tb.config, tb.registers, poll_interval=0)
        transport.set_memory_base(tb.base)
        assert transport.memory_base == tb.base
        other = dataclasses.replace(tb.config, clock_hz=tb.config.clock_hz + 1)
        try:
            ZynqTransport(other, tb.registers, poll_interval=0)
        except TritiumError as error:
            assert "is design" in str(error)
        else:
            raise AssertionError("a transport for another design was accepted")

    await bridge(host)()


@cocotb.test()
async def frames_and_memory_through_the_window(dut):
    """The host's frames through the byte FIFOs: INFO, WRITE landing in the modelled DDR
    at the base address, READ, SET/GET, an image placed directly in the buffer and read
    over the link, and bad frames rejected without harm."""
    tb = KV260TB(dut)
    await tb.reset()
    config, word_bytes = tb.config, tb.config.memory.bytes_per_word

    def host():
        transport = ZynqTransport(config, tb.registers, poll_interval=0)
        buffer = transport.attach_buffer(SimBuffer(tb.ram, tb.base, transport.memory_bytes))
        link = LinkClient(transport, timeout=60)
        info = link.info()
        assert (info.design, info.word_bytes) == (config.design_id, word_bytes)
        assert info.max_payload == config.max_payload

        data = bytes((7 * i + 3) % 256 for i in range(2500))     # three WRITE frames
        address = 100
        link.write(address, data)
        assert buffer.read(address * word_bytes, len(data)) == data
        assert tb.ram.read(address * word_bytes, 64) == bytes(64)  # the base was added
        words = -(-len(data) // word_bytes)
        assert link.read(address, words)[:len(data)] == data

        image = bytes(range(256)) * 3
        assert transport.load_image([(600, image)]) == len(image)
        assert link.read(600, len(image) // word_bytes) == image

        link.set(REGISTERS["position"], 17)
        assert link.get(REGISTERS["position"]) == 17

        # A frame with a broken CRC is rejected with its code and not executed.
        frame = bytearray(encode_frame(p.WRITE, 9, struct.pack("<I", 600) + bytes(word_bytes)))
        frame[-2] ^= 0x01                           # the CRC's last byte
        assert frame[-2] not in (p.END, p.ESC) and frame[-3] != p.ESC   # still one frame
        transport.send(bytes(frame))
        decoder, replies = FrameDecoder(), []
        while not replies:
            replies = decoder.feed(transport.receive(60))
        (raw, bad_escape), = replies
        kind, tag, payload = parse_frame(raw)
        assert (kind, tag, bad_escape) == (p.ERROR, 9, False)
        assert payload[:2] == bytes([p.ERR_CRC, p.WRITE])
        assert link.read(600, 1) == image[:word_bytes]       # nothing was written

        try:
            link.request(0x42)
        except DeviceError as error:
            assert error.code == p.ERR_COMMAND
        else:
            raise AssertionError("an unknown command was accepted")
        assert link.info().design == config.design_id        # and the link still works
        status = transport.status()
        assert not status & (reg.STATUS_TX_OVERFLOW | reg.STATUS_MEMORY_ERROR), status
        return tb.registers.accesses

    accesses = await bridge(host)()
    dut._log.info("host program done: %d register accesses; read bursts per master: %s",
                  accesses, tb.bursts)
    # The link's reads (2,500 bytes and more) span several chunks: every master of the
    # units' port served some. (A design with a weight port reads the other masters for
    # LINEAR and HEAD only, which this link-level bench does not run: the same BoardPorts
    # carry a whole model in tests/cosim/test_board_sim.py.)
    units = axi_names(config)[:config.units_ports]
    assert all(tb.bursts[name] for name in units), tb.bursts
    assert sum(tb.bursts.values()) == sum(tb.bursts[name] for name in units), tb.bursts
