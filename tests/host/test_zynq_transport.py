"""The ``zynq`` transport (issue 6) without a board: ``open_transport("zynq[:ADDRESS]")``
and ``tritium run --backend zynq`` against a software KV260 (the register window's
FIFOs feeding a :class:`DeviceModel` whose memory is the physical memory at the base
registers' address), through ``/dev/mem`` (a sparse file standing in for it) and
through PYNQ (a stand-in module); ``Accelerator.load`` through ``load_image``; each
run's io region through ``write_memory``/``read_memory`` (issue 15), with only the small
frames left on the window; and the bad input, each a one-line error."""

import collections
import errno
import importlib.machinery
import json
import mmap
import struct
import sys
import types

import numpy as np
import pytest

from tritium.hw.link import window_map as reg
from tritium.host import zynq_transport
from tritium.host.accelerator import Accelerator
from tritium.cli import main
from tritium.host.errors import InputError, TritiumError
from tritium.host.importers import load_model
from tritium.host.link import FrameDecoder, encode_frame, parse_frame
from tritium.host.device_model import DeviceModelTransport
from tritium.host.transports import open_transport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.link import protocol as p
from tritium.sim.golden.model import GoldenModel

TINY = ACCELERATOR_PRESETS["tiny"]
WORD_BYTES = TINY.memory.bytes_per_word
MEMORY_BYTES = TINY.memory_words * WORD_BYTES
BUFFER = 0x4000_0000               # the reserved region's physical address in these tests
IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108]        # 11 tokens: 8 + 3


NAMES = {offset: name for name, offset in reg.REGISTERS.items()}
SMALL = {p.SET, p.GET, p.RUN}       # the frames of a run besides the io region's data


class BoardWindow(zynq_transport.Registers):
    """The KV260 board top's register window in software.

    Bytes written to ``tx_data`` wait in a FIFO of ``depth`` bytes; whenever the host
    polls (``tx_space``, ``rx_count``, ``status``) the device takes them: a
    :class:`DeviceModel` whose memory is ``memory_at(base)``, the physical memory at
    the base registers' address, as the board top's address offset makes it. Its
    replies wait in the other FIFO. ``kinds`` lists the command of every frame the
    device received; ``accesses`` counts the register accesses by kind and register
    name, ``to_device_bytes`` and ``from_device_bytes`` keep the bytes that crossed.
    """

    def __init__(self, config, memory_at, depth=512):
        from tritium.host.device_model import DeviceModel
        self.device, self.memory_at, self.depth = DeviceModel(config), memory_at, depth
        self.values = {reg.REGISTERS["magic"]: reg.WINDOW_MAGIC,
                       reg.REGISTERS["version"]: reg.WINDOW_VERSION,
                       reg.REGISTERS["design"]: config.design_id,
                       reg.REGISTERS["base_lo"]: 0, reg.REGISTERS["base_hi"]: 0}
        self.to_device, self.to_host, self.overflow = bytearray(), bytearray(), False
        self.kinds, self._frames, self.closed, self._mapped = [], FrameDecoder(), False, None
        self.accesses = collections.Counter()
        self.to_device_bytes, self.from_device_bytes = bytearray(), bytearray()

    @property
    def base(self):
        return self.values[reg.REGISTERS["base_hi"]] << 32 | self.values[reg.REGISTERS["base_lo"]]

    def _device_runs(self):
        if self.to_device:
            if self._mapped != self.base:
                self.device.memory, self._mapped = self.memory_at(self.base), self.base
            data, self.to_device = bytes(self.to_device), bytearray()
            self.kinds += [raw[0] for raw, _ in self._frames.feed(data) if raw]
            self.to_device_bytes += data
            self.to_host += self.device.receive(data)

    def read32(self, offset):
        R = reg.REGISTERS
        self.accesses["read", NAMES.get(offset, offset)] += 1
        if offset in (R["tx_space"], R["rx_count"], R["status"]):
            self._device_runs()
        if offset == R["tx_space"]:
            return self.depth - len(self.to_device)
        if offset == R["rx_count"]:
            return len(self.to_host)
        if offset == R["status"]:
            return ((reg.STATUS_TX_READY if len(self.to_device) < self.depth else 0)
                    | (reg.STATUS_RX_VALID if self.to_host else 0)
                    | (reg.STATUS_TX_OVERFLOW if self.overflow else 0))
        if offset == R["rx_data"]:
            if not self.to_host:
                return 0
            self.from_device_bytes.append(self.to_host[0])
            return reg.RX_DATA_VALID | self.to_host.pop(0)
        return self.values.get(offset, 0)

    def write32(self, offset, value):
        R = reg.REGISTERS
        self.accesses["write", NAMES.get(offset, offset)] += 1
        if offset == R["tx_data"]:
            if len(self.to_device) < self.depth:
                self.to_device.append(value & 0xFF)
            else:
                self.overflow = True
        elif offset == R["status"] and value & reg.STATUS_TX_OVERFLOW:
            self.overflow = False
        elif offset == R["base_lo"]:
            self.values[offset] = value & 0xFFFFF000
        elif offset == R["base_hi"]:
            self.values[offset] = value & 0x1FFFF

    def close(self):
        self.closed = True


@pytest.fixture
def dev_mem(tmp_path, monkeypatch):
    """A sparse file as /dev/mem, holding physical memory up to the end of the buffer."""
    path = tmp_path / "mem"
    with path.open("wb") as file:
        file.truncate(BUFFER + MEMORY_BYTES)
    monkeypatch.setattr(zynq_transport, "DEV_MEM", str(path))
    return path


@pytest.fixture
def board(dev_mem, monkeypatch):
    """The software KV260 behind the window (no PYNQ: /dev/mem for everything)."""
    monkeypatch.setitem(sys.modules, "pynq", None)              # not installed
    maps = []

    def memory_at(base):
        with dev_mem.open("r+b") as file:
            maps.append(mmap.mmap(file.fileno(), MEMORY_BYTES, offset=base))
        return maps[-1]

    window = BoardWindow(TINY, memory_at)
    monkeypatch.setattr(zynq_transport, "open_registers", lambda address: window)
    yield window
    for view in maps:
        view.close()


def written_memory(model):
    """The device's memory after loading ``model`` in WRITE frames (the golden way)."""
    with Accelerator(TINY, DeviceModelTransport(TINY)) as accelerator:
        accelerator.load(model)
        return bytes(accelerator.transport.device.memory)


# -- the whole path -------------------------------------------------------------------------

def test_the_tiny_model_runs_through_the_zynq_transport(board, dev_mem):
    """Through ``zynq:ADDRESS``: the base registers point at the reserved region, load
    fills it through load_image (no WRITE frame; words read back to check it) with the
    same bytes WRITE frames leave, and prefill and decode match the golden model with
    every run's embeddings and hidden states through the buffer (no WRITE or READ
    frame after load)."""
    model = load_model("tiny")
    golden = GoldenModel(model)
    cache = golden.new_cache()
    transport = open_transport(f"zynq:0x{BUFFER:x}", TINY)
    assert isinstance(transport, zynq_transport.ZynqTransport)
    assert board.base == transport.memory_base == BUFFER
    with Accelerator(TINY, transport) as accelerator:
        accelerator.load(model)
        assert p.WRITE not in board.kinds and p.READ in board.kinds
        with dev_mem.open("rb") as file:
            file.seek(BUFFER)
            assert file.read(MEMORY_BYTES) == written_memory(model)
        board.kinds = []
        assert np.array_equal(accelerator.prefill(IDS), golden.forward(IDS, cache))
        for token in (33, 10):
            assert np.array_equal(accelerator.decode(token), golden.forward([token], cache)[-1])
        assert set(board.kinds) <= SMALL and board.kinds.count(p.RUN) == 4  # 8 + 3, 1, 1
    assert transport.buffer is None and board.closed          # mapping and window released


def test_a_decode_token_moves_only_small_frames_through_the_window(board):
    """Per decode token the window carries one small frame, RUN with its tag and the
    run's position and tokens, and its reply (status, run counter, cycles), one
    register access per
    byte (the window's FIFO registers take a byte per access), plus one ``tx_space`` and
    one ``status`` read per request and one ``rx_count`` read per reply (the device
    model answers at once). No byte of the io region (the run's inputs in, the hidden
    state's ``hidden * 4`` = 512 bytes out) passes it: they go through the buffer."""
    model = load_model("tiny")
    with Accelerator(TINY, open_transport(f"zynq:0x{BUFFER:x}", TINY)) as accelerator:
        accelerator.load(model)
        accelerator.prefill(IDS[:3])
        board.accesses.clear()
        board.kinds, board.to_device_bytes, board.from_device_bytes = [], bytearray(), bytearray()
        position = accelerator.position
        accelerator.decode(33)
    requests = [parse_frame(raw) for raw, _ in FrameDecoder().feed(board.to_device_bytes)]
    replies = [parse_frame(raw) for raw, _ in FrameDecoder().feed(board.from_device_bytes)]
    assert [(kind, payload) for kind, _, payload in requests] == \
        [(p.RUN, struct.pack(p.RUN_SET_FORMAT, 2, position, 1))]    # the prefill's was 1
    assert [(kind | p.REPLY, tag) for kind, tag, _ in requests] == \
        [(kind, tag) for kind, tag, _ in replies]
    assert max(len(payload) for _, _, payload in requests + replies) <= p.RUN_REPLY_BYTES
    # The bytes that crossed are those frames' and nothing else (the device model, like
    # the host, puts an END before each frame as well as after it).
    sent = sum(len(encode_frame(*request)) for request in requests)
    received = sum(len(encode_frame(*reply)) for reply in replies)
    assert (len(board.to_device_bytes), len(board.from_device_bytes)) == (sent, received)
    frames = len(requests)
    assert board.accesses == {("write", "tx_data"): sent, ("read", "tx_space"): frames,
                              ("read", "status"): frames, ("read", "rx_count"): frames,
                              ("read", "rx_data"): received}
    assert sent + received < TINY.model.hidden * 4 // 2


def test_write_memory_and_read_memory_go_straight_to_the_buffer(board):
    """What WRITE and READ frames would do, without the window: padded to whole words,
    bounds checked before anything is written."""
    transport = open_transport(f"zynq:0x{BUFFER:x}", TINY)
    before = sum(board.accesses.values())
    transport.write_memory(5, b"\x01" * (WORD_BYTES + 3))
    assert transport.buffer.read(5 * WORD_BYTES, 2 * WORD_BYTES + 1) == \
        b"\x01" * (WORD_BYTES + 3) + bytes(WORD_BYTES - 3 + 1)
    assert transport.read_memory(5, 2) == b"\x01" * (WORD_BYTES + 3) + bytes(WORD_BYTES - 3)
    assert transport.read_memory(5, 0) == b""
    assert sum(board.accesses.values()) == before                # not one register access
    last = TINY.memory_words - 1
    with pytest.raises(InputError, match=rf"^{2 * WORD_BYTES} bytes at word {last} lie "
                                         rf"outside the accelerator's {TINY.memory_words} "
                                         rf"words$"):
        transport.write_memory(last, bytes(WORD_BYTES + 1))
    assert transport.read_memory(last, 1) == bytes(WORD_BYTES)   # nothing was written
    with pytest.raises(InputError, match=r"^\d+ bytes at word -1 lie outside"):
        transport.read_memory(-1, 1)
    with pytest.raises(InputError, match=r"^a read takes a count of words, not -1$"):
        transport.read_memory(0, -1)
    transport.close()
    bare = zynq_transport.ZynqTransport(TINY, BoardWindow(TINY, None))
    with pytest.raises(InputError, match=r"^attach a buffer \(attach_buffer\) before "
                                         r"writing the accelerator's memory$"):
        bare.write_memory(0, b"x")
    with pytest.raises(InputError, match=r"^attach a buffer \(attach_buffer\) before "
                                         r"reading the accelerator's memory$"):
        bare.read_memory(0, 1)


def test_the_cli_runs_on_the_zynq_backend(board, capsys):
    code = main(["run", "--model", "tiny", "--config", "tiny", "--backend", f"zynq:{BUFFER}",
                 "--prompt", "Once", "-n", "3", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == f"zynq:{BUFFER}" and result["matches_golden"] is True
    assert len(result["tokens"]) == 3


class CmaSlice(np.ndarray):
    """A slice of a :class:`FakeCma`: as a slice of PYNQ's buffer, it flushes and
    invalidates only its own bytes; each is logged as ``(what, offset, bytes)``."""

    def flush(self):
        self.log.append(("flush", self.start, self.nbytes))

    def invalidate(self):
        self.log.append(("invalidate", self.start, self.nbytes))


class FakeCma:
    """What PYNQ's ``allocate`` returns, over an anonymous map: slices (which flush and
    invalidate their range into ``log``), whole-buffer flush, free."""

    def __init__(self, size, physical_address):
        self.map = mmap.mmap(-1, size)
        self.array = np.frombuffer(self.map, dtype=np.uint8)
        self.physical_address, self.flushes, self.freed = physical_address, 0, False
        self.log = []

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self.array[index]
        view = self.array[index].view(CmaSlice)
        view.log, view.start = self.log, index.indices(len(self.array))[0]
        return view

    def __setitem__(self, index, value):
        self.array[index] = value

    def flush(self):
        self.flushes += 1

    def invalidate(self):
        pass

    def freebuffer(self):
        self.freed = True


def fake_pynq(window, allocate):
    """A ``pynq`` module with ``MMIO`` on ``window`` and the given ``allocate``."""
    module = types.ModuleType("pynq")
    module.__spec__ = importlib.machinery.ModuleSpec("pynq", None)

    class MMIO:
        def __init__(self, address, length):
            assert (address, length) == (zynq_transport.LINK_WINDOW_ADDRESS, reg.WINDOW_BYTES)

        def read(self, offset):
            return window.read32(offset)

        def write(self, offset, value):
            window.write32(offset, value)

    module.MMIO, module.allocate = MMIO, allocate
    return module


def test_the_tiny_model_runs_on_a_pynq_buffer(monkeypatch):
    """Plain ``zynq`` with PYNQ installed: its MMIO for the window, its ``allocate`` for
    the buffer, flushed after load_image and freed on close."""
    cma = []

    def allocate(shape, dtype):
        assert dtype == "u1"
        cma.append(FakeCma(shape[0], 0x7000_0000))
        return cma[-1]

    window = BoardWindow(TINY, lambda base: cma[0].map if base == cma[0].physical_address
                         else mmap.mmap(-1, MEMORY_BYTES))
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(window, allocate))
    model = load_model("tiny")
    with Accelerator(TINY, open_transport("zynq", TINY)) as accelerator:
        assert isinstance(accelerator.transport.registers, zynq_transport.PynqRegisters)
        accelerator.load(model)
        assert cma[0].flushes == 1 and p.WRITE not in window.kinds
        assert bytes(cma[0].map) == written_memory(model)
        cma[0].log = window.kinds = []          # one log: cache maintenance and frames
        assert np.array_equal(accelerator.prefill(IDS[:3]),
                              GoldenModel(model).forward(IDS[:3], GoldenModel(model).new_cache()))
    assert cma[0].freed
    # The io region's bytes only are flushed after the CPU wrote the run's inputs and
    # before SET and RUN, and invalidated after RUN answered and before the CPU reads
    # the 3 tokens' hidden states.
    compiled, log = accelerator.compiled, window.kinds
    io, states = compiled.io_address * WORD_BYTES, compiled.states_address * WORD_BYTES
    flush, start, length = log[0]
    assert (flush, start) == ("flush", io) and length and length % WORD_BYTES == 0
    assert log[-1] == ("invalidate", states, 3 * TINY.model.hidden * 4)
    assert set(log[1:-1]) <= SMALL and log.count(p.RUN) == 1
    assert cma[0].flushes == 1                  # never the whole 512 KiB again


# -- Accelerator.load through load_image ----------------------------------------------------

class DirectTransport(DeviceModelTransport):
    """The device model with a load_image that writes its memory ``shift`` words off."""

    def __init__(self, config, shift=0):
        super().__init__(config)
        self.shift, self.sent = shift, []

    def send(self, data):
        self.sent.append(bytes(data))
        super().send(data)

    def load_image(self, image):
        for address, data in image:
            start = (address + self.shift) * WORD_BYTES
            self.device.memory[start:start + len(data)] = data


def test_load_checks_what_load_image_placed():
    """A load_image the device does not see (here: one word off, as a wrong base would
    be) is caught at load, not in the logits; a right one loads without WRITE frames."""
    model = load_model("tiny")
    with pytest.raises(TritiumError, match=r"^the device reads word \d+ of the loaded image "
                                           r"differently .*\(base address, cache flush\)$"):
        Accelerator(TINY, DirectTransport(TINY, shift=1)).load(model)
    transport = DirectTransport(TINY)
    Accelerator(TINY, transport).load(model)
    decoder = FrameDecoder()
    kinds = [raw[0] for data in transport.sent for raw, _ in decoder.feed(data)]
    assert p.WRITE not in kinds and kinds.count(p.READ) >= 2
    assert bytes(transport.device.memory) == written_memory(model)


def test_load_image_pads_to_words_and_refuses_what_lies_outside(board):
    transport = open_transport(f"zynq:0x{BUFFER:x}", TINY)
    assert transport.load_image([(3, b"\xff" * 5)]) == WORD_BYTES
    assert transport.buffer.read(3 * WORD_BYTES, WORD_BYTES + 1) == \
        b"\xff" * 5 + bytes(WORD_BYTES - 5 + 1)
    with pytest.raises(InputError, match=rf"^the image's {WORD_BYTES} bytes at word "
                                         rf"{TINY.memory_words} lie outside the "
                                         rf"accelerator's {TINY.memory_words} words$"):
        transport.load_image([(0, b"\x01"), (TINY.memory_words, b"\x02")])
    assert transport.buffer.read(0, 1) == b"\0"                  # nothing was written
    transport.close()


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("argument, expected", [
    (None, None), ("0x40000000", BUFFER), ("1073741824", BUFFER), ("0x4000_0000", BUFFER),
])
def test_zynq_specs(argument, expected):
    assert zynq_transport.parse_zynq_spec(argument, MEMORY_BYTES) == expected


@pytest.mark.parametrize("argument, message", [
    ("", "transport 'zynq' takes the physical address of a reserved buffer "
         "(e.g. zynq:0x40000000), not ''"),
    ("fast", "transport 'zynq' takes the physical address of a reserved buffer "
             "(e.g. zynq:0x40000000), not 'fast'"),
    ("0x40000800", "the memory base 0x40000800 is not a multiple of 4096 bytes"),
    ("-4096", f"a memory base of -4096 does not leave room for {MEMORY_BYTES} bytes below 2**49"),
    ("0x1fffffffff000", f"a memory base of {0x1fffffffff000} does not leave room for "
                        f"{MEMORY_BYTES} bytes below 2**49"),
])
def test_bad_zynq_specs_are_refused_before_the_hardware(argument, message, monkeypatch):
    def no_hardware(address):
        raise AssertionError("the window was opened")
    monkeypatch.setattr(zynq_transport, "open_registers", no_hardware)
    with pytest.raises(InputError) as caught:
        open_transport(f"zynq:{argument}", TINY)
    assert str(caught.value) == message


def test_without_pynq_an_address_is_needed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)
    monkeypatch.setattr(zynq_transport, "DEV_MEM", str(tmp_path / "missing"))  # not reached
    with pytest.raises(InputError, match=rf"^transport 'zynq' allocates the accelerator's "
                                         rf"{MEMORY_BYTES}-byte buffer with PYNQ, which is not "
                                         rf"installed: install PYNQ, or reserve a region and "
                                         rf"give its physical address \(zynq:0xADDRESS\)$"):
        open_transport("zynq", TINY)
    transport = zynq_transport.ZynqTransport(TINY, BoardWindow(TINY, None))
    with pytest.raises(TritiumError, match=rf"^allocating the accelerator's {MEMORY_BYTES}-byte "
                                           rf"buffer needs PYNQ, which is not installed"):
        transport.attach_buffer()


def test_dev_mem_that_cannot_be_opened_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)
    missing = tmp_path / "missing"
    monkeypatch.setattr(zynq_transport, "DEV_MEM", str(missing))
    with pytest.raises(TritiumError) as caught:
        open_transport(f"zynq:0x{BUFFER:x}", TINY)
    assert str(caught.value) == (f"cannot open {missing} for the link window (No such file "
                                 f"or directory): run this on the KV260")

    def denied(path, flags):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(zynq_transport.os, "open", denied)
    with pytest.raises(TritiumError, match=r"\(Permission denied\): run as root on the board$"):
        open_transport(f"zynq:0x{BUFFER:x}", TINY)


def test_a_buffer_that_cannot_be_attached_releases_the_window(board, dev_mem, monkeypatch):
    monkeypatch.setattr(zynq_transport, "DEV_MEM", str(dev_mem.parent / "missing"))
    with pytest.raises(TritiumError, match="cannot open .*missing for the memory buffer"):
        open_transport(f"zynq:0x{BUFFER:x}", TINY)
    assert board.closed


def test_pynq_that_cannot_allocate_is_a_clear_error(monkeypatch):
    def allocate(shape, dtype):
        raise RuntimeError("Failed to allocate Memory!")
    window = BoardWindow(TINY, lambda base: mmap.mmap(-1, MEMORY_BYTES))
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(window, allocate))
    with pytest.raises(TritiumError) as caught:
        open_transport("zynq", TINY)
    assert str(caught.value) == (f"PYNQ could not allocate a {MEMORY_BYTES}-byte buffer "
                                 f"(Failed to allocate Memory!): enlarge the CMA pool (kernel "
                                 f"argument cma=) or reserve a region and give its physical "
                                 f"address (zynq:0xADDRESS)")


@pytest.mark.parametrize("backend, message", [
    ("zynq:nowhere", "transport 'zynq' takes the physical address of a reserved buffer "
                     "(e.g. zynq:0x40000000), not 'nowhere'"),
    ("zynq:0x40000010", "the memory base 0x40000010 is not a multiple of 4096 bytes"),
    ("zynq", f"transport 'zynq' allocates the accelerator's {MEMORY_BYTES}-byte buffer with "
             f"PYNQ, which is not installed: install PYNQ, or reserve a region and give its "
             f"physical address (zynq:0xADDRESS)"),
])
def test_the_cli_names_the_problem_in_one_line(backend, message, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)
    code = main(["run", "--model", "tiny", "--config", "tiny", "--backend", backend,
                 "--prompt", "Hi", "-n", "2"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"tritium: error: {message}"


def test_the_cli_takes_the_kv260_preset_by_default(capsys, monkeypatch):
    """Without --config, a zynq backend means the kv260 preset: the tiny model is then
    refused for its shape, before any hardware is touched."""
    monkeypatch.setitem(sys.modules, "pynq", None)
    code = main(["run", "--model", "tiny", "--backend", "zynq:0x40000000", "--prompt", "Hi",
                 "-n", "2"])
    assert code == 2
    assert "accelerator 'kv260'" in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_cli_names_a_dev_mem_it_cannot_open(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)
    monkeypatch.setattr(zynq_transport, "DEV_MEM", str(tmp_path / "mem"))
    code = main(["run", "--model", "tiny", "--config", "tiny", "--backend", "zynq:0x40000000",
                 "--prompt", "Hi", "-n", "2"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tritium: error: cannot open {tmp_path / 'mem'} for the link window (No such file or "
        f"directory): run this on the KV260")
