"""The accelerator's top: host link, registers, controller and memory (composition only)."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .control.controller import CONTROLLER_COUNTERS, Controller
from .control.isa import REGISTER_RESET, REGISTERS, WRITABLE_REGISTERS
from .link.host_link import HostLink
from .link.registers import Register, RegisterFile
from .memory import OnChipMemory
from .memory.mux import PortMux, PortRegisters
from .memory.port import MemoryPortSignature

__all__ = ["Top", "register_map"]


def register_map() -> list:
    """The registers of docs/program.md (``hw/control/isa.py``)."""
    return [Register(name, index, writable=name in WRITABLE_REGISTERS,
                     init=REGISTER_RESET.get(name, 0))
            for name, index in REGISTERS.items()]


class Top(wiring.Component):
    """Link, registers, controller and memory of one :class:`AcceleratorConfig`.

    The host link owns the memory port while the controller is idle (to load the
    model and move embeddings and hidden states) and the controller while it runs.
    With ``onchip=True`` the memory is an :class:`OnChipMemory` of ``memory_words``
    words inside the top; otherwise the port is the top's ``memory`` member, for a
    board's DRAM or a simulation model. Either way the port is registered on every
    channel on its way out (:class:`PortRegisters`). A design whose TLMM has a weight
    port of its own (``config.weight_port``, a board design) has it as ``weights``,
    registered likewise; :class:`~tritium.hw.memory.fabric.BoardPorts` puts both on
    the board's memory ports.

    Members
    -------
    rx : ``In(stream.Signature(8))``; tx : ``Out(stream.Signature(8))``
        The host link's bytes.
    memory : ``Out(MemoryPortSignature(config.memory))`` (only without ``onchip``)
    weights : ``Out(MemoryPortSignature(config.weight_memory))`` (only with ``config.weight_port``)
    """

    def __init__(self, config: AcceleratorConfig, onchip: bool = True):
        if onchip and config.weight_port:
            raise ValueError(f"accelerator {config.name!r} streams its weights through a "
                             f"port of its own (weight_port_words = "
                             f"{config.weight_port_words}): it needs a board's memory, "
                             f"not the on-chip one")
        self._config, self._onchip = config, onchip
        members = {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8))}
        if not onchip:
            members["memory"] = Out(MemoryPortSignature(config.memory))
        if config.weight_port:
            members["weights"] = Out(MemoryPortSignature(config.weight_memory))
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.link = link = HostLink(cfg.memory, cfg.memory_words, cfg.max_payload,
                                            cfg.design_id)
        m.submodules.registers = registers = RegisterFile(register_map())
        m.submodules.controller = controller = Controller(cfg)
        m.submodules.ports = ports = PortMux(cfg.memory, ("link", "controller"))
        wiring.connect(m, wiring.flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, wiring.flipped(self.tx))
        wiring.connect(m, link.registers, registers.bus)
        wiring.connect(m, link.run, controller.run)
        wiring.connect(m, controller.finished, link.finished)
        wiring.connect(m, link.memory, ports.link)
        wiring.connect(m, controller.memory, ports.controller)
        # Every channel registered between the clients and the memory (PortRegisters).
        m.submodules.port_registers = port_registers = PortRegisters(cfg.memory)
        wiring.connect(m, ports.memory, port_registers.client)
        if self._onchip:
            m.submodules.memory = memory = OnChipMemory(cfg.memory, cfg.memory_words)
            wiring.connect(m, port_registers.memory, memory.port)
        else:
            wiring.connect(m, port_registers.memory, wiring.flipped(self.memory))
        if cfg.weight_port:
            m.submodules.weight_registers = weight_registers = PortRegisters(cfg.weight_memory)
            wiring.connect(m, controller.weights, weight_registers.client)
            wiring.connect(m, weight_registers.memory, wiring.flipped(self.weights))
        m.d.comb += ports.select.eq(controller.busy)
        for name in WRITABLE_REGISTERS:
            m.d.comb += getattr(controller, name).eq(getattr(registers, name))
        for name in CONTROLLER_COUNTERS:
            m.d.comb += getattr(registers, name).eq(getattr(controller, name))
        m.d.comb += [registers.status.eq(controller.status),
                     registers.run_tag.eq(controller.run_tag),
                     registers.design.eq(cfg.design_id)]
        return m
