"""The AXI-Lite register window of the Zynq board tops (docs/boards.md, "KV260").

Plain Python only (a contract, like the link protocol): the gateware (:mod:`tritium.boards.zynq`) and the
transport that runs on the board's ARM cores (:mod:`tritium.host.zynq_transport`) both
take the offsets and bits from here, so they cannot disagree.

The window gives the ARM the accelerator's host link as a byte FIFO in each direction
(the SLIP frames of docs/link.md, unchanged) and the base address in PS DDR of the
buffer that the accelerator's memory port reads and writes. Every register is 32 bits
wide at a byte offset that is a multiple of 4.
"""

__all__ = ["REGISTERS", "READ_ONLY", "WINDOW_MAGIC", "WINDOW_VERSION", "WINDOW_BYTES",
           "STATUS_TX_READY", "STATUS_RX_VALID", "STATUS_TX_OVERFLOW", "STATUS_MEMORY_ERROR",
           "RX_DATA_VALID", "BASE_ALIGN_BYTES", "BASE_ADDRESS_BITS"]

#: Byte offsets of the registers.
REGISTERS = {
    "magic": 0x00,      # R   WINDOW_MAGIC: the window is mapped where the host looks
    "version": 0x04,    # R   WINDOW_VERSION
    "design": 0x08,     # R   the accelerator's design id (what INFO reports)
    "status": 0x0C,     # R   STATUS_* bits; write 1 to STATUS_TX_OVERFLOW to clear it
    "tx_data": 0x10,    # W   bits 7:0: one byte to the device (dropped when the FIFO is full)
    "tx_space": 0x14,   # R   bytes the to-device FIFO can take now
    "rx_data": 0x18,    # R   pops one byte: bit 8 = RX_DATA_VALID, bits 7:0 = the byte
    "rx_count": 0x1C,   # R   bytes waiting in the from-device FIFO
    "base_lo": 0x20,    # RW  bits 31:12 of the memory base address (bits 11:0 read 0)
    "base_hi": 0x24,    # RW  bits 48:32 of the memory base address
}

#: Registers whose writes are ignored (``status`` only clears its sticky bit).
READ_ONLY = ("magic", "version", "design", "tx_space", "rx_data", "rx_count")

WINDOW_MAGIC = int.from_bytes(b"TRZW", "little")    # "tritium Zynq window"
WINDOW_VERSION = 1
#: The window's size; the block design maps it with this range. Offsets inside it
#: that name no register answer SLVERR.
WINDOW_BYTES = 4096

STATUS_TX_READY = 1 << 0        # the to-device FIFO has room for a byte
STATUS_RX_VALID = 1 << 1        # the from-device FIFO holds a byte
STATUS_TX_OVERFLOW = 1 << 2     # sticky: a tx_data write found the FIFO full (byte lost)
STATUS_MEMORY_ERROR = 1 << 3    # sticky until reset: the AXI master got a non-OKAY response

RX_DATA_VALID = 1 << 8

#: The memory base must be a multiple of 4 KiB, so that adding it keeps every AXI burst
#: inside one 4 KiB page (the AXI master splits bursts at page boundaries).
BASE_ALIGN_BYTES = 4096
#: Width of the AXI master's byte addresses (that of the Zynq UltraScale+ HP ports).
BASE_ADDRESS_BITS = 49
