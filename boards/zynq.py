"""Gateware shared by the Zynq UltraScale+ board tops: AXI-Lite link window, address offset.

On a Zynq the ARM cores reach the fabric through an AXI master port of the PS (HPM0)
and the fabric reaches PS DDR through an AXI slave port (HP0). The accelerator's
``Top`` has a byte-stream host link and a memory port; this module adapts both:

- :class:`AXI4LiteTarget` turns AXI4-Lite transactions into single-cycle register
  accesses (:class:`RegisterAccessSignature`);
- :class:`LinkWindow` serves the register window of :mod:`tritium.hw.link.window_map` on
  those accesses: a byte FIFO in each direction for the link's SLIP frames, status, the
  design id and the base address of the accelerator's buffer in PS DDR;
- :class:`AXI4AddressOffset` adds that base address to every AXI4 address the memory
  port's :class:`~tritium.hw.memory.AXI4Master` issues, and widens it to the HP port's
  49 bits;
- :func:`annotate_axi`, :func:`annotate_clock` and :func:`annotate_reset` put the
  ``X_INTERFACE_INFO`` attributes on a board top's ports that make Vivado's block
  design see them as AXI interfaces, a clock and a reset (module reference).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, flipped

from tritium.hw.memory.axi import AXI_RESP_OKAY, AXI_RESP_SLVERR, AXI4Signature

from tritium.hw.link import window_map as reg

__all__ = ["AXI4LiteSignature", "RegisterAccessSignature", "AXI4LiteTarget", "LinkWindow",
           "AXI4AddressOffset", "check_fifo_depth", "annotate_axi", "annotate_clock",
           "annotate_reset", "AXI_RESP_OKAY", "AXI_RESP_SLVERR"]



class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite interface as its master sees it (the slave side uses ``.flip()``).

    Member names follow Xilinx IP (``awaddr`` ... ``rready``), so a member ``s_axi_lite:
    In(AXI4LiteSignature(12))`` comes out of Verilog as ``s_axi_lite__awaddr`` etc.
    Data is 32 bits wide.
    """

    def __init__(self, addr_width: int):
        if not isinstance(addr_width, int) or isinstance(addr_width, bool) or \
                not 3 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer in 3..64, not {addr_width!r}")
        self._addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self) -> int:
        return self._addr_width

    def __eq__(self, other):
        return isinstance(other, AXI4LiteSignature) and self.addr_width == other.addr_width

    def __repr__(self):
        return f"AXI4LiteSignature({self.addr_width})"


class RegisterAccessSignature(wiring.Signature):
    """Single-cycle register accesses, as the bus side issues them.

    In a cycle with ``read`` or ``write`` high, the register side answers
    combinationally: ``read_data`` (for a read) and ``error`` (no register at ``addr``).
    A write stores ``write_data``'s bytes selected by ``write_strobe`` at the next edge;
    a read may have a side effect at that edge too (popping a FIFO).
    """

    def __init__(self, addr_width: int):
        super().__init__({
            "addr": Out(addr_width), "read": Out(1), "write": Out(1),
            "write_data": Out(32), "write_strobe": Out(4),
            "read_data": In(32), "error": In(1),
        })


class AXI4LiteTarget(wiring.Component):
    """An AXI4-Lite slave that turns each transaction into one register access.

    One read and one write response may be outstanding; a new transaction of a kind is
    taken once the previous response of that kind has been accepted. A write needs its
    address and data together (``awready`` and ``wready`` rise in the same cycle). When
    a read and a write arrive in the same cycle the write goes first. A register access
    that reports ``error`` is answered SLVERR, every other one OKAY. ``*prot`` is ignored.

    Members
    -------
    axi : ``In(AXI4LiteSignature(addr_width))``
    access : ``Out(RegisterAccessSignature(addr_width))``
    """

    def __init__(self, addr_width: int):
        super().__init__({
            "axi": In(AXI4LiteSignature(addr_width)),
            "access": Out(RegisterAccessSignature(addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        axi, access = self.axi, self.access
        do_write = Signal()
        do_read = Signal()
        m.d.comb += [
            do_write.eq(axi.awvalid & axi.wvalid & ~axi.bvalid),
            do_read.eq(axi.arvalid & ~axi.rvalid & ~do_write),
            axi.awready.eq(do_write), axi.wready.eq(do_write), axi.arready.eq(do_read),
            access.write.eq(do_write), access.read.eq(do_read),
            access.addr.eq(Mux(do_write, axi.awaddr, axi.araddr)),
            access.write_data.eq(axi.wdata), access.write_strobe.eq(axi.wstrb),
        ]
        response = Mux(access.error, AXI_RESP_SLVERR, AXI_RESP_OKAY)
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += axi.bvalid.eq(0)
        with m.If(do_write):
            m.d.sync += [axi.bvalid.eq(1), axi.bresp.eq(response)]
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        with m.If(do_read):
            m.d.sync += [axi.rvalid.eq(1), axi.rresp.eq(response),
                         axi.rdata.eq(access.read_data)]
        return m


def _merge_bytes(old, data, strobe):
    """``old`` with the bytes of ``data`` that ``strobe`` selects written over it."""
    return Cat(*(Mux(strobe[i], data[8 * i:8 * i + 8], old[8 * i:8 * i + 8])
                 for i in range(4)))


def check_fifo_depth(fifo_depth) -> None:
    """Raise ``ValueError`` unless ``fifo_depth`` suits :class:`LinkWindow` (2 .. 65536)."""
    if not isinstance(fifo_depth, int) or isinstance(fifo_depth, bool) or \
            not 2 <= fifo_depth <= 2 ** 16:
        raise ValueError(f"fifo_depth must be an integer in 2..65536, not {fifo_depth!r}")


class LinkWindow(wiring.Component):
    """The register window of :mod:`tritium.hw.link.window_map` (docs/boards.md).

    ``tx_data`` writes enter a :class:`SyncFIFOBuffered` of ``fifo_depth`` bytes that
    drains into ``to_device`` (the accelerator's ``rx``); a write that finds it full is
    dropped and sets the sticky ``STATUS_TX_OVERFLOW``. ``from_device`` (the
    accelerator's ``tx``) fills a second FIFO of ``fifo_depth`` bytes, which ``rx_data``
    reads pop (a read of the empty FIFO returns 0). The base address registers drive
    ``base`` (bits 11:0 always 0).

    Members
    -------
    access : ``In(RegisterAccessSignature(addr_width))``
    to_device : ``Out(stream.Signature(8))``
    from_device : ``In(stream.Signature(8))``
    base : ``Out(window_map.BASE_ADDRESS_BITS)``
    memory_error : ``In(1)``
    """

    def __init__(self, design: int, *, addr_width: int = 12, fifo_depth: int = 512):
        check_fifo_depth(fifo_depth)
        if not 0 <= design < 2 ** 32:
            raise ValueError(f"design must be a 32-bit unsigned integer, not {design!r}")
        self._design = design
        self._fifo_depth = fifo_depth
        super().__init__({
            "access": In(RegisterAccessSignature(addr_width)),
            "to_device": Out(stream.Signature(8)),
            "from_device": In(stream.Signature(8)),
            "base": Out(reg.BASE_ADDRESS_BITS),
            "memory_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        access = self.access
        m.submodules.tx_fifo = tx_fifo = SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        m.submodules.rx_fifo = rx_fifo = SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        wiring.connect(m, tx_fifo.r_stream, flipped(self.to_device))
        wiring.connect(m, flipped(self.from_device), rx_fifo.w_stream)

        base_lo = Signal(32 - 12)                      # base address bits 31:12
        base_hi = Signal(reg.BASE_ADDRESS_BITS - 32)   # bits 48:32
        overflow = Signal()
        m.d.comb += self.base.eq(Cat(Const(0, 12), base_lo, base_hi))

        status = Cat(tx_fifo.w_rdy, rx_fifo.r_rdy, overflow, self.memory_error)
        values = {
            "magic": Const(reg.WINDOW_MAGIC, 32), "version": Const(reg.WINDOW_VERSION, 32),
            "design": Const(self._design, 32), "status": status,
            "tx_data": Const(0, 32), "tx_space": self._fifo_depth - tx_fifo.w_level,
            "rx_data": Mux(rx_fifo.r_rdy, Cat(rx_fifo.r_data, 1), 0), "rx_count": rx_fifo.r_level,
            "base_lo": Cat(Const(0, 12), base_lo), "base_hi": base_hi,
        }
        write_data, strobe = access.write_data, access.write_strobe
        with m.Switch(access.addr):
            for name, offset in reg.REGISTERS.items():
                with m.Case(offset):
                    m.d.comb += access.read_data.eq(values[name])
            with m.Default():
                m.d.comb += access.error.eq(1)

        def writing(name):
            return access.write & (access.addr == reg.REGISTERS[name])

        with m.If(writing("tx_data") & strobe[0]):
            m.d.comb += [tx_fifo.w_data.eq(write_data[:8]), tx_fifo.w_en.eq(1)]
            with m.If(~tx_fifo.w_rdy):
                m.d.sync += overflow.eq(1)
        with m.If(writing("status") & strobe[0] &
                  (write_data & reg.STATUS_TX_OVERFLOW).any()):
            m.d.sync += overflow.eq(0)
        with m.If(access.read & (access.addr == reg.REGISTERS["rx_data"])):
            m.d.comb += rx_fifo.r_en.eq(1)
        with m.If(writing("base_lo")):
            merged = _merge_bytes(Cat(Const(0, 12), base_lo), write_data, strobe)
            m.d.sync += base_lo.eq(merged[12:])
        with m.If(writing("base_hi")):
            merged = _merge_bytes(base_hi, write_data, strobe)
            m.d.sync += base_hi.eq(merged)
        return m


class AXI4AddressOffset(wiring.Component):
    """Pass an AXI4 master through, adding ``base`` to ``araddr`` and ``awaddr``.

    The outer addresses are ``addr_width`` bits wide: the inner address plus ``base``,
    modulo ``2**addr_width``. Everything else goes straight through. The adder is
    combinational; ``base`` must not change while transactions are in flight.

    Members
    -------
    inner : ``In(inner_signature)``
        The master being offset (an :class:`AXI4Signature`).
    outer : ``Out(AXI4Signature(addr_width, data_width, id_width))``
    base : ``In(addr_width)``
    """

    def __init__(self, inner_signature: AXI4Signature, addr_width: int):
        if not isinstance(inner_signature, AXI4Signature):
            raise TypeError(f"inner_signature must be an AXI4Signature, not {inner_signature!r}")
        if addr_width < inner_signature.addr_width_bytes:
            raise ValueError(f"addr_width ({addr_width}) must be at least the inner master's "
                             f"{inner_signature.addr_width_bytes} address bits")
        outer = AXI4Signature(addr_width, inner_signature.data_width, inner_signature.id_width)
        super().__init__({"inner": In(inner_signature), "outer": Out(outer),
                          "base": In(addr_width)})

    def elaborate(self, platform):
        m = Module()
        for name, member in self.outer.signature.members.items():
            inner, outer = getattr(self.inner, name), getattr(self.outer, name)
            if name in ("araddr", "awaddr"):
                m.d.comb += outer.eq(self.base + inner)
            elif member.flow == Out:
                m.d.comb += outer.eq(inner)
            else:
                m.d.comb += inner.eq(outer)
        return m


# Vivado reads these Verilog attributes on the ports of a module reference (UG994,
# "Inferring AXI interfaces"; UG1118, X_INTERFACE_INFO).

def annotate_axi(interface, name: str, protocol: str, mode: str):
    """Mark every port of ``interface`` (an AXI4 or AXI4-Lite member of a component) as
    part of the Vivado AXI interface ``name``; ``protocol`` is ``"AXI4"`` or
    ``"AXI4LITE"``, ``mode`` ``"master"`` or ``"slave"``."""
    members = list(interface.signature.members)
    for member in members:
        port = getattr(interface, member)
        port.attrs["X_INTERFACE_INFO"] = f"xilinx.com:interface:aximm:1.0 {name} {member.upper()}"
    first = getattr(interface, members[0])
    first.attrs["X_INTERFACE_MODE"] = mode
    first.attrs["X_INTERFACE_PARAMETER"] = f"XIL_INTERFACENAME {name}, PROTOCOL {protocol}"


def annotate_clock(port, name: str, interfaces, reset: str):
    port.attrs["X_INTERFACE_INFO"] = f"xilinx.com:signal:clock:1.0 {name} CLK"
    port.attrs["X_INTERFACE_PARAMETER"] = (f"XIL_INTERFACENAME {name}, ASSOCIATED_BUSIF "
                                           f"{':'.join(interfaces)}, ASSOCIATED_RESET {reset}")


def annotate_reset(port, name: str):
    port.attrs["X_INTERFACE_INFO"] = f"xilinx.com:signal:reset:1.0 {name} RST"
    port.attrs["X_INTERFACE_PARAMETER"] = f"XIL_INTERFACENAME {name}, POLARITY ACTIVE_LOW"
