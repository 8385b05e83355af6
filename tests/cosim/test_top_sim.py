"""Tier 3: the generated top of the ``tiny`` accelerator on Verilator, through the ``sim``
transport (the same bytes a board gets): the link's commands, registers and run checks."""

import struct

import pytest

from tritium.host.link import DeviceError, LinkClient
from tritium.host.sim_transport import SimTransport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.control.isa import REGISTERS, STATUS
from tritium.hw.link import protocol as p

pytestmark = pytest.mark.cosim

TINY = ACCELERATOR_PRESETS["tiny"]


@pytest.fixture(scope="module")
def link():
    with SimTransport(TINY) as transport:
        yield LinkClient(transport, timeout=120)


def test_the_device_identifies_its_design(link):
    info = link.info()
    assert (info.design, info.word_bytes, info.max_payload) == (TINY.design_id, 32, 1024)
    assert link.get(REGISTERS["design"]) == TINY.design_id


def test_memory_round_trip_over_several_frames(link):
    data = bytes((i * 7 + 3) % 256 for i in range(2500))           # three WRITE frames
    link.write(100, data)
    assert link.read(100, -(-len(data) // 32))[:len(data)] == data


def test_bad_runs_are_refused_before_anything_runs(link):
    link.set(REGISTERS["tokens"], 0)
    assert link.run() == STATUS["BAD_TOKENS"]
    link.set(REGISTERS["tokens"], TINY.max_tokens + 1)
    assert link.run() == STATUS["BAD_TOKENS"]
    link.set(REGISTERS["tokens"], 2)
    link.set(REGISTERS["position"], TINY.model.max_context - 1)
    assert link.run() == STATUS["BAD_POSITION"]
    assert link.get(REGISTERS["status"]) == STATUS["BAD_POSITION"]


def test_an_unknown_opcode_stops_the_run(link):
    link.write(200, bytes([0x7F]) + bytes(31))
    link.set(REGISTERS["program"], 200)
    link.set(REGISTERS["position"], 0)
    link.set(REGISTERS["tokens"], 1)
    assert link.run() == STATUS["BAD_OPCODE"]


def test_device_errors_reach_the_host(link):
    with pytest.raises(DeviceError, match="bad argument"):
        link.request(p.SET, struct.pack("<BI", REGISTERS["status"], 1))
    with pytest.raises(DeviceError, match="unknown command"):
        link.request(0x42)
