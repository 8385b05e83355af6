"""The ``zynq`` transport: the host link of a Zynq board top, from the board's ARM cores.

On the KV260 (docs/boards.md, "KV260") a host program runs on the PS's ARM cores and
reaches the accelerator through the AXI-Lite register window of
:mod:`tritium.hw.link.window_map`: the link's SLIP frames go through a byte FIFO in each
direction, so :class:`~tritium.host.link.LinkClient` and
:class:`~tritium.host.accelerator.Accelerator` work unchanged. The accelerator's memory
is a contiguous buffer in PS DDR whose physical address the host writes to the
window's base registers; the host fills and reads it directly instead of sending bulk
data through the window: the model (:meth:`ZynqTransport.load_image`) and each run's
io region (:meth:`ZynqTransport.write_memory`, :meth:`ZynqTransport.read_memory`, which
:class:`~tritium.host.accelerator.Accelerator` uses in place of WRITE and READ frames).
The window carries only the small frames (SET, RUN, GET, INFO, the image check's
READs), one register access per byte: the gateware's FIFO registers take one byte per
access.

The register protocol sits behind :class:`Registers` (``read32``/``write32`` at byte
offsets into the window), with two implementations for the board, PYNQ's ``MMIO``
(:class:`PynqRegisters`) and ``/dev/mem`` (:class:`DevMemRegisters`), and any other for
tests (the simulation of the board top drives it with AXI-Lite transactions). The
DDR buffer likewise sits behind :class:`Buffer`: PYNQ's ``allocate``
(:class:`PynqBuffer`) or a physical region the user reserved (:class:`DevMemBuffer`).

:func:`open_zynq` is the ``zynq[:ADDRESS]`` transport of
:func:`~tritium.host.transports.open_transport` (and ``tritium run --backend zynq``):
the window, its checks and the buffer attached, ready for the driver.
"""

import errno
import importlib.util
import mmap
import operator
import os
import time

import numpy as np

from tritium.hw.link import window_map as reg
from .errors import InputError, TritiumError
from .link import LinkError, LinkTimeout, pad_to_words
from .transport import Closeable, Transport

__all__ = ["Registers", "DevMemRegisters", "PynqRegisters", "open_registers", "Buffer",
           "DevMemBuffer", "PynqBuffer", "ZynqTransport", "LINK_WINDOW_ADDRESS", "DEV_MEM",
           "pynq_installed", "check_memory_base", "parse_zynq_spec", "open_zynq"]

#: Where the KV260 block design maps the window (``boards/kv260.py``): the start of
#: the PS's M_AXI_HPM0_LPD range.
LINK_WINDOW_ADDRESS = 0x8000_0000
#: The physical memory device the ``/dev/mem`` classes map by default (read when they
#: are made, so tests can point it at a file).
DEV_MEM = "/dev/mem"
_PAGE = mmap.PAGESIZE


def pynq_installed() -> bool:
    """Whether PYNQ can be imported (the board's Kria-PYNQ environment)."""
    return importlib.util.find_spec("pynq") is not None


def check_memory_base(physical_address, memory_bytes: int) -> None:
    """Raise :class:`InputError` unless ``physical_address`` can be the accelerator's
    memory base: 4 KiB aligned, with ``memory_bytes`` below the HP port's 2**49."""
    if not isinstance(physical_address, int) or physical_address < 0 or \
            physical_address + memory_bytes > 2 ** reg.BASE_ADDRESS_BITS:
        raise InputError(f"a memory base of {physical_address!r} does not leave room for "
                         f"{memory_bytes} bytes below 2**{reg.BASE_ADDRESS_BITS}")
    if physical_address % reg.BASE_ALIGN_BYTES:
        raise InputError(f"the memory base 0x{physical_address:x} is not a multiple of "
                         f"{reg.BASE_ALIGN_BYTES} bytes")


class Registers(Closeable):
    """32-bit registers of the window at byte ``offset``s; usable as a context manager."""

    def read32(self, offset: int) -> int:
        raise NotImplementedError

    def write32(self, offset: int, value: int) -> None:
        raise NotImplementedError


def _open_dev_mem(path: str, address: int, size: int, what: str):
    """(file descriptor, mmap, offset of ``address`` in the map) for a physical range."""
    start = address - address % _PAGE
    length = address + size - start
    try:
        fd = os.open(path, os.O_RDWR | os.O_SYNC)
    except OSError as error:
        # Only a permission problem is cured by root; a missing device means this is
        # not the board (or its kernel has no /dev/mem).
        hint = ("run as root on the board" if error.errno in (errno.EACCES, errno.EPERM)
                else "run this on the KV260")
        raise TritiumError(f"cannot open {path} for the {what} ({error.strerror}): "
                           f"{hint}") from None
    try:
        view = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                         offset=start)
    except (OSError, ValueError) as error:
        os.close(fd)
        raise TritiumError(f"cannot map the {what} at 0x{address:x} from {path}: "
                           f"{error}") from None
    return fd, view, address - start


class DevMemRegisters(Registers):
    """The window through ``/dev/mem`` (root; ``O_SYNC``, so the map is uncached).

    Each access is one 32-bit load or store (a NumPy ``uint32`` element, as PYNQ's MMIO
    does): a read of ``rx_data`` pops the FIFO, so it must not be split or repeated.
    """

    def __init__(self, address: int = LINK_WINDOW_ADDRESS, path: str = None):
        self._fd, self._map, base = _open_dev_mem(path or DEV_MEM, address, reg.WINDOW_BYTES,
                                                  "link window")
        self._words = np.frombuffer(self._map, dtype=np.uint32, count=reg.WINDOW_BYTES // 4,
                                    offset=base)

    def read32(self, offset: int) -> int:
        return int(self._words[offset // 4])

    def write32(self, offset: int, value: int) -> None:
        self._words[offset // 4] = value & 0xFFFFFFFF

    def close(self) -> None:
        if self._map is not None:
            del self._words                     # the map cannot close while viewed
            self._map.close()
            os.close(self._fd)
            self._map = None


class PynqRegisters(Registers):
    """The window through PYNQ's ``MMIO`` (needs the overlay's bitstream loaded)."""

    def __init__(self, address: int = LINK_WINDOW_ADDRESS):
        from pynq import MMIO
        self._mmio = MMIO(address, reg.WINDOW_BYTES)

    def read32(self, offset: int) -> int:
        return int(self._mmio.read(offset))

    def write32(self, offset: int, value: int) -> None:
        self._mmio.write(offset, value & 0xFFFFFFFF)


def open_registers(address: int = LINK_WINDOW_ADDRESS) -> Registers:
    """PYNQ's MMIO where PYNQ is installed, else ``/dev/mem``."""
    if not pynq_installed():
        return DevMemRegisters(address)
    return PynqRegisters(address)


class Buffer:
    """A physically contiguous buffer in PS DDR that the accelerator reads and writes.

    ``physical_address`` and ``size`` (bytes); ``write``/``read`` at byte offsets;
    ``flush`` makes the CPU's writes visible to the fabric (HP ports do not snoop the
    caches), ``invalidate`` makes the fabric's writes visible to the CPU: both for
    ``length`` bytes from ``offset``, or the whole buffer when ``length`` is None.
    """

    physical_address: int
    size: int

    def write(self, offset: int, data: bytes) -> None:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def flush(self, offset: int = 0, length: int = None) -> None:
        pass

    def invalidate(self, offset: int = 0, length: int = None) -> None:
        pass

    def close(self) -> None:
        pass

    def _check(self, offset, length):
        if offset < 0 or offset + length > self.size:
            raise InputError(f"bytes {offset}..{offset + length - 1} are outside the "
                             f"{self.size}-byte buffer")


class DevMemBuffer(Buffer):
    """A physical region the user reserved for the accelerator (for instance a
    ``reserved-memory`` node of the device tree), mapped through ``/dev/mem`` with
    ``O_SYNC``: uncached, so no flush is needed."""

    def __init__(self, physical_address: int, size: int, path: str = None):
        if physical_address % reg.BASE_ALIGN_BYTES:
            raise InputError(f"the buffer's physical address 0x{physical_address:x} is not "
                             f"a multiple of {reg.BASE_ALIGN_BYTES} bytes")
        self.physical_address, self.size = physical_address, size
        self._fd, self._map, self._base = _open_dev_mem(path or DEV_MEM, physical_address,
                                                        size, "memory buffer")

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._map[self._base + offset:self._base + offset + len(data)] = bytes(data)

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self._map[self._base + offset:self._base + offset + length])

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            os.close(self._fd)
            self._map = None


class PynqBuffer(Buffer):
    """A contiguous buffer from PYNQ's ``allocate`` (CMA), cached: flushed after writes."""

    def __init__(self, size: int):
        if not pynq_installed():
            raise TritiumError(f"allocating the accelerator's {size}-byte buffer needs PYNQ, "
                               f"which is not installed: install it, or reserve a region "
                               f"and give its physical address (zynq:0xADDRESS)")
        from pynq import allocate
        try:
            self._array = allocate(shape=(size,), dtype="u1")
        except (RuntimeError, MemoryError, OSError) as error:
            # PYNQ reports a CMA pool too small for the buffer this way.
            raise TritiumError(f"PYNQ could not allocate a {size}-byte buffer ({error}): "
                               f"enlarge the CMA pool (kernel argument cma=) or reserve a "
                               f"region and give its physical address "
                               f"(zynq:0xADDRESS)") from None
        self.physical_address, self.size = int(self._array.physical_address), size
        if self.physical_address % reg.BASE_ALIGN_BYTES:
            self.close()
            raise TritiumError(f"PYNQ allocated a buffer at 0x{self.physical_address:x}, not "
                               f"aligned to {reg.BASE_ALIGN_BYTES} bytes")

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._array[offset:offset + len(data)] = np.frombuffer(bytes(data), np.uint8)

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self._array[offset:offset + length].tobytes()

    def flush(self, offset: int = 0, length: int = None) -> None:
        self._range(offset, length).flush()

    def invalidate(self, offset: int = 0, length: int = None) -> None:
        self._range(offset, length).invalidate()

    def _range(self, offset, length):
        # A slice of PYNQ's buffer keeps its offset into the allocation and flushes or
        # invalidates only its own bytes (its nbytes), not the whole 512 MiB.
        return self._array if length is None else self._array[offset:offset + length]

    def close(self) -> None:
        self._array.freebuffer()


class ZynqTransport(Transport):
    """Link bytes through the window's FIFOs; the accelerator's memory in a DDR buffer.

    ``config`` is the :class:`~tritium.hw.config.AcceleratorConfig` the bitstream was
    generated from: the window's design id must match it, and it sizes the buffer
    (``memory_words`` bus words). ``registers`` defaults to :func:`open_registers` at
    ``address``. ``poll_interval`` is how long :meth:`receive` and :meth:`send` sleep
    between polls of an empty or full FIFO (0: poll without sleeping).

    Raises :class:`TritiumError` when the window is not there (wrong magic or version)
    or belongs to another design.
    """

    def __init__(self, config, registers: Registers = None, *,
                 address: int = LINK_WINDOW_ADDRESS, poll_interval: float = 50e-6):
        self.config = config
        self.registers = registers if registers is not None else open_registers(address)
        self.poll_interval = poll_interval
        self.buffer = None
        try:
            self._check_window(address)
        except TritiumError:
            if registers is None:               # ours to release (a /dev/mem mapping)
                self.registers.close()
            raise

    def _check_window(self, address):
        config = self.config
        magic = self.registers.read32(reg.REGISTERS["magic"])
        if magic != reg.WINDOW_MAGIC:
            raise TritiumError(f"no tritium link window at 0x{address:x} (magic 0x{magic:08x}, "
                               f"expected 0x{reg.WINDOW_MAGIC:08x}): is the bitstream loaded?")
        version = self.registers.read32(reg.REGISTERS["version"])
        if version != reg.WINDOW_VERSION:
            raise TritiumError(f"the link window has version {version}; this host speaks "
                               f"version {reg.WINDOW_VERSION}")
        design = self.registers.read32(reg.REGISTERS["design"])
        if design != config.design_id:
            raise TritiumError(f"the loaded bitstream is design 0x{design:08x}, but accelerator "
                               f"{config.name!r} is design 0x{config.design_id:08x}")

    # -- the byte stream -------------------------------------------------------------------

    def send(self, data: bytes, timeout: float = 10.0) -> None:
        """Hand ``data`` to the device, as fast as its FIFO takes it.

        One ``tx_data`` write per byte: the window takes one byte per access (bits 7:0),
        so this is a Python loop per byte. Bulk data goes through the buffer instead
        (:meth:`write_memory`); what comes here is the link's small frames.
        """
        regs, data = self.registers, bytes(data)
        write32, tx_data = regs.write32, reg.REGISTERS["tx_data"]
        deadline, sent = time.monotonic() + timeout, 0
        while sent < len(data):
            space = regs.read32(reg.REGISTERS["tx_space"])
            if not space:
                if time.monotonic() > deadline:
                    raise LinkTimeout(f"the device took no bytes for {timeout} s "
                                      f"({len(data) - sent} of {len(data)} still to send)")
                self._pause()
                continue
            for byte in data[sent:sent + space]:
                write32(tx_data, byte)
            sent += min(space, len(data) - sent)
            deadline = time.monotonic() + timeout
        if self.status() & reg.STATUS_TX_OVERFLOW:
            regs.write32(reg.REGISTERS["status"], reg.STATUS_TX_OVERFLOW)
            raise LinkError("the device's receive FIFO overflowed: bytes were lost")

    def receive(self, timeout: float) -> bytes:
        """What the device has sent (at least one byte), or LinkTimeout after ``timeout`` s.

        One ``rx_data`` read per byte (each read pops one byte of the FIFO).
        """
        regs = self.registers
        read32, rx_data = regs.read32, reg.REGISTERS["rx_data"]
        deadline = time.monotonic() + timeout
        while True:
            count = regs.read32(reg.REGISTERS["rx_count"])
            if count:
                received = bytearray()
                for _ in range(count):
                    word = read32(rx_data)
                    if not word & reg.RX_DATA_VALID:
                        raise LinkError(f"the from-device FIFO said {count} bytes but ran "
                                        f"dry after {len(received)}")
                    received.append(word & 0xFF)
                return bytes(received)
            if time.monotonic() > deadline:
                raise LinkTimeout(f"the device sent nothing for {timeout} s")
            self._pause()

    def _pause(self):
        if self.poll_interval:
            time.sleep(self.poll_interval)

    def status(self) -> int:
        """The window's status bits (``window_map.STATUS_*``)."""
        return self.registers.read32(reg.REGISTERS["status"])

    # -- the memory buffer -----------------------------------------------------------------

    @property
    def memory_bytes(self) -> int:
        """Bytes of the accelerator's memory: ``memory_words`` bus words."""
        return self.config.memory_words * self.config.memory.bytes_per_word

    @property
    def memory_base(self) -> int:
        """The physical address the accelerator's word 0 is at (the base registers)."""
        low = self.registers.read32(reg.REGISTERS["base_lo"])
        high = self.registers.read32(reg.REGISTERS["base_hi"])
        return high << 32 | low

    def set_memory_base(self, physical_address: int) -> None:
        """Point the accelerator's memory at ``physical_address`` (4 KiB aligned)."""
        check_memory_base(physical_address, self.memory_bytes)
        self.registers.write32(reg.REGISTERS["base_lo"], physical_address & 0xFFFFFFFF)
        self.registers.write32(reg.REGISTERS["base_hi"], physical_address >> 32)
        if self.memory_base != physical_address:
            raise TritiumError(f"the base registers read back 0x{self.memory_base:x} after "
                               f"writing 0x{physical_address:x}")

    def attach_buffer(self, buffer: Buffer = None, *, physical_address: int = None) -> Buffer:
        """Give the accelerator its memory and return the buffer.

        ``buffer``: any :class:`Buffer` of at least :attr:`memory_bytes`; or
        ``physical_address``: a reserved region, mapped through ``/dev/mem``
        (:class:`DevMemBuffer`); or neither: PYNQ's ``allocate`` (:class:`PynqBuffer`).
        The transport keeps the buffer and closes it in :meth:`close`.
        """
        if buffer is not None:
            return self._attach(buffer)
        buffer = (DevMemBuffer(physical_address, self.memory_bytes)
                  if physical_address is not None else PynqBuffer(self.memory_bytes))
        try:
            return self._attach(buffer)
        except TritiumError:
            buffer.close()                      # made here, so released here
            raise

    def _attach(self, buffer: Buffer) -> Buffer:
        if buffer.size < self.memory_bytes:
            raise InputError(f"a buffer of {buffer.size} bytes is too small for the "
                             f"accelerator's memory of {self.memory_bytes} bytes")
        self.set_memory_base(buffer.physical_address)
        self.buffer = buffer
        return buffer

    def load_image(self, image) -> int:
        """Write a compiled model's memory image (``(word address, bytes)`` pairs, as
        ``CompiledModel.image``) straight into the buffer; return the bytes written.

        The result is what WRITE frames would leave: data padded with zeros to whole
        words, and nothing beyond the accelerator's ``memory_words`` (refused, like a
        WRITE there, before anything is written).
        """
        self._check_buffer("loading an image")
        word_bytes = self.config.memory.bytes_per_word
        padded = [(address, pad_to_words(data, word_bytes)) for address, data in image]
        for address, data in padded:
            self._check_range(address, len(data), "the image's ")
        for address, data in padded:
            self.buffer.write(address * word_bytes, data)
        self.buffer.flush()
        return sum(len(data) for _, data in padded)

    def write_memory(self, address: int, data: bytes) -> None:
        """Store ``data`` from the accelerator's word ``address`` straight into the
        buffer, then flush those bytes to DDR: what a WRITE frame stores (padded with
        zeros to whole words; refused, before anything is written, where it leaves the
        accelerator's ``memory_words``), without passing the window. The accelerator
        reads them once the host sends RUN, which it does after this returns.
        """
        self._check_buffer("writing the accelerator's memory")
        data = pad_to_words(data, self.config.memory.bytes_per_word)
        start = self._check_range(address, len(data))
        self.buffer.write(start, data)
        self.buffer.flush(start, len(data))

    def read_memory(self, address: int, words: int) -> bytes:
        """``words`` bus words from the accelerator's word ``address``, straight from the
        buffer: what a READ frame returns, without passing the window. Those bytes' cache
        lines are invalidated first, so the CPU reads what the accelerator wrote to DDR
        (a run's results are there when RUN has answered: its STOREs wait for their
        write responses).
        """
        self._check_buffer("reading the accelerator's memory")
        try:
            count = operator.index(words)
        except TypeError:
            count = -1
        if count < 0:
            raise InputError(f"a read takes a count of words, not {words!r}")
        words = count
        length = words * self.config.memory.bytes_per_word
        start = self._check_range(address, length)
        self.buffer.invalidate(start, length)
        return self.buffer.read(start, length)

    def _check_buffer(self, doing):
        if self.buffer is None:
            raise InputError(f"attach a buffer (attach_buffer) before {doing}")

    def _check_range(self, address, length, what="") -> int:
        """The byte offset of word ``address``, or InputError unless ``length`` bytes
        from there lie inside the accelerator's memory."""
        start = address * self.config.memory.bytes_per_word
        if address < 0 or start + length > self.memory_bytes:
            raise InputError(f"{what}{length} bytes at word {address} lie outside the "
                             f"accelerator's {self.config.memory_words} words")
        return start

    def close(self) -> None:
        """Release the buffer (a PYNQ allocation or a /dev/mem mapping) and the window."""
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None
        self.registers.close()


# -- the ``zynq`` transport ----------------------------------------------------------------

def parse_zynq_spec(argument, memory_bytes: int):
    """The buffer's physical address in ``zynq:ADDRESS`` (hex ``0x...`` or decimal), or
    None for plain ``zynq`` (PYNQ allocates one). Raises :class:`InputError` for an
    address that is not a number or cannot be the accelerator's memory base."""
    if argument is None:
        return None
    try:
        address = int(argument, 0)
    except ValueError:
        raise InputError(f"transport 'zynq' takes the physical address of a reserved "
                         f"buffer (e.g. zynq:0x40000000), not {argument!r}") from None
    check_memory_base(address, memory_bytes)
    return address


def open_zynq(argument, config) -> ZynqTransport:
    """The ``zynq[:ADDRESS]`` transport: the window (PYNQ's MMIO, else ``/dev/mem``),
    checked against ``config``, with the accelerator's memory attached: the reserved
    region at ``ADDRESS``, or without one a buffer from PYNQ's ``allocate``.

    Every argument is checked before the hardware is touched; the window is closed
    again if the buffer cannot be attached.
    """
    memory_bytes = config.memory_words * config.memory.bytes_per_word
    address = parse_zynq_spec(argument, memory_bytes)
    if address is None and not pynq_installed():
        raise InputError(f"transport 'zynq' allocates the accelerator's {memory_bytes}-byte "
                         f"buffer with PYNQ, which is not installed: install PYNQ, or reserve "
                         f"a region and give its physical address (zynq:0xADDRESS)")
    transport = ZynqTransport(config)
    try:
        # The base registers must point at the buffer before the driver's first WRITE
        # or RUN reaches the accelerator's memory port.
        transport.attach_buffer(physical_address=address)
    except BaseException:
        transport.close()
        raise
    return transport
