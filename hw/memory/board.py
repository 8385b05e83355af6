"""A board's external memory in simulation: several ports, each with its own bandwidth
and latency, under shared caps (:class:`~tritium.hw.memory_model.MemoryModel`).

:class:`BoardMemory` is what the full-size simulations put behind the accelerator's
memory port: the port rates, the latency, the groups of ports that share an upstream
port and the aggregate cap of a board's memory model, enforced cycle by cycle. Its
storage is either an Amaranth memory (small depths, ``amaranth.sim``) or, for the
hundreds of megabytes a full-size model needs, a Verilog memory with no initial image
that the testbench fills through a backdoor (:data:`BACKDOOR_RAM_VERILOG`): Amaranth
would write an initial value for every row, megabytes of Verilog for a large memory.
"""

from fractions import Fraction

from amaranth import Cat, ClockSignal, Instance, Module, Mux, Signal
from amaranth.hdl import unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped
from amaranth.utils import ceil_log2

from ..memory_model import MemoryModel
from .onchip import WordReader, WordWriter, check_memory_args
from .port import MemoryConfig, MemoryPortSignature
from .simmodel import BandwidthLimiter, CommandDelay

__all__ = ["BoardMemory", "SharedBandwidth", "BACKDOOR_RAM_VERILOG", "BACKDOOR_PLUSARG",
           "STORAGES"]

STORAGES = ("memory", "backdoor")

#: The simulator argument naming the image file the backdoor loads: ``+tritium_memory_image=PATH``.
BACKDOOR_PLUSARG = "tritium_memory_image"

#: The backdoor storage: PORTS synchronous read and write ports on one array with no
#: initial contents. On a clock edge with ``load`` high it reads the file named by the
#: plusarg with ``$readmemh`` (``@address`` lines, then one word per line in hex), so a
#: testbench stores an image of any size in one cycle.
BACKDOOR_RAM_VERILOG = f"""
module tritium_backdoor_ram #(
    parameter WIDTH = 32, parameter ADDR = 10, parameter DEPTH = 1024, parameter PORTS = 1
) (
    input clk,
    input load,
    input [PORTS*ADDR-1:0] rd_addr,
    input [PORTS-1:0] rd_en,
    output reg [PORTS*WIDTH-1:0] rd_data,
    input [PORTS*ADDR-1:0] wr_addr,
    input [PORTS-1:0] wr_en,
    input [PORTS*WIDTH-1:0] wr_data
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [8*1024-1:0] image;
    integer i;
    always @(posedge clk) begin
        if (load && $value$plusargs("{BACKDOOR_PLUSARG}=%s", image))
            $readmemh(image, mem);
        for (i = 0; i < PORTS; i = i + 1) begin
            if (rd_en[i])
                rd_data[i*WIDTH +: WIDTH] <= mem[rd_addr[i*ADDR +: ADDR]];
            if (wr_en[i])
                mem[wr_addr[i*ADDR +: ADDR]] <= wr_data[i*WIDTH +: WIDTH];
        end
    end
endmodule
"""


class SharedBandwidth(wiring.Component):
    """Token buckets shared by several ports (a group behind one upstream port, or the
    aggregate of all).

    Each budget gains its ``bytes_per_cycle`` of credit every cycle and holds at most a
    word per member plus one cycle's gain. Every cycle the ports are visited in
    round-robin order, a different port first each cycle; a port that asks is allowed
    a word if every budget it belongs to still covers one after the ports visited
    before it, so several ports can move a word in the same cycle.

    Parameters
    ----------
    ports : int
    bytes_per_word : int
    budgets : list of (tuple of port indices, Fraction bytes per cycle)

    Members
    -------
    request : ``In(ports)``
        Port ``i`` has a word its own bucket covers.
    allow : ``Out(ports)``
        Port ``i`` may move it this cycle.
    """

    def __init__(self, ports: int, bytes_per_word: int, budgets):
        self._ports = ports
        self._budgets = [(tuple(members), Fraction(rate)) for members, rate in budgets]
        self._bytes_per_word = bytes_per_word
        super().__init__({"request": In(ports), "allow": Out(ports)})

    def elaborate(self, platform):
        m = Module()
        n = self._ports
        if not self._budgets:
            m.d.comb += self.allow.eq(self.request)
            return m
        buckets = []
        for index, (members, rate) in enumerate(self._budgets):
            cost = self._bytes_per_word * rate.denominator
            capacity = cost * len(members) + rate.numerator
            credit = Signal(range(capacity + 1), init=capacity, name=f"credit{index}")
            spent = Signal(range(len(members) + 1), name=f"spent{index}")
            buckets.append((members, rate.numerator, cost, capacity, credit, spent))
        first = Signal(range(n))
        m.d.sync += first.eq(Mux(first == n - 1, 0, first + 1))
        with m.Switch(first):
            for start in range(n):
                with m.Case(start):
                    self._visit(m, [(start + k) % n for k in range(n)], buckets)
        for members, gain, cost, capacity, credit, spent in buckets:
            refilled = credit + gain - spent * cost
            m.d.sync += credit.eq(Mux(refilled > capacity, capacity, refilled))
        return m

    def _visit(self, m, order, buckets):
        """Allow the ports in ``order``, each while every budget it draws on still covers a word."""
        left = {id(bucket): bucket[4] for bucket in buckets}
        taken = {id(bucket): 0 for bucket in buckets}
        for port in order:
            mine = [bucket for bucket in buckets if port in bucket[0]]
            allowed = self.request[port]
            for bucket in mine:
                allowed = allowed & (left[id(bucket)] >= bucket[2])
            m.d.comb += self.allow[port].eq(allowed)
            # The later ports' terms use ``allowed`` itself, not ``self.allow``: each case of
            # the visiting order reads ``allow`` bits that another case drives, which
            # Verilog conversion would take for a combinational loop.
            for bucket in mine:
                left[id(bucket)] = left[id(bucket)] - Mux(allowed, bucket[2], 0)
                taken[id(bucket)] = taken[id(bucket)] + allowed
        for bucket in buckets:
            m.d.comb += bucket[5].eq(taken[id(bucket)])


class BoardMemory(wiring.Component):
    """Memory of ``depth`` words behind ``ports`` memory ports, as a board's memory model
    says (see the module docstring).

    Each port behaves as a :class:`~tritium.hw.memory.SimMemory` of its own rate and
    latency (the model's, at ``clock_hz``; the first word of a read comes
    ``latency + SIM_MEMORY_PIPELINE_CYCLES`` cycles after its command, up to 16 reads
    queue per port, reads and writes share the port's bandwidth) and every word also
    draws on the shared budgets of the model's groups and aggregate that include it
    (:class:`SharedBandwidth`). All ports see one storage; a read returns the new data
    of a word only if it is issued after the ``write_done`` of the write that stored it.

    Parameters
    ----------
    config : :class:`MemoryConfig`
    depth : int
        Words of storage; addresses wrap as in :class:`~tritium.hw.memory.OnChipMemory`.
    model : :class:`~tritium.hw.memory_model.MemoryModel`
    clock_hz : int
        The design's clock, which the ports run on.
    ports : int
        How many of the model's ports are used, its first ``ports``.
    storage : ``"memory"`` or ``"backdoor"``
        An Amaranth memory (with ``init``), or :data:`BACKDOOR_RAM_VERILOG` loaded
        through ``load`` (a Verilog simulation only: build it with :attr:`verilog_library`).

    Members
    -------
    port : ``In(MemoryPortSignature(config)).array(ports)``
    load : ``In(1)``
        With backdoor storage: load the image file named by the
        ``+tritium_memory_image=PATH`` simulator argument at this clock edge.
    read_words, written_words : ``Out(32).array(ports)``
        Words moved through each port since reset (wrap), for benchmarks.
    """

    def __init__(self, config: MemoryConfig, depth: int, model: MemoryModel, clock_hz: int,
                 ports: int = 1, storage: str = "memory", init=()):
        self._init = check_memory_args(config, depth, init)
        if not isinstance(model, MemoryModel):
            raise TypeError(f"model must be a MemoryModel, not {model!r}")
        if not isinstance(ports, int) or not 1 <= ports <= len(model.ports):
            raise ValueError(f"memory model {model.name!r} has {len(model.ports)} ports; "
                             f"cannot use {ports!r}")
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {storage!r}")
        if storage == "backdoor" and (self._init or depth < 2):
            raise ValueError("backdoor storage starts empty (load the image through the "
                             "backdoor) and holds at least 2 words")
        if not isinstance(clock_hz, int) or clock_hz < 1:
            raise ValueError(f"clock_hz must be a positive integer, not {clock_hz!r}")
        self._config, self._depth, self._model = config, depth, model
        self._clock_hz, self._ports, self._storage = clock_hz, ports, storage
        super().__init__({
            "port": In(MemoryPortSignature(config)).array(ports),
            "load": In(1),
            "read_words": Out(32).array(ports),
            "written_words": Out(32).array(ports),
        })

    @property
    def verilog_library(self) -> str:
        """Verilog modules the generated Verilog instantiates (the backdoor storage)."""
        return BACKDOOR_RAM_VERILOG if self._storage == "backdoor" else ""

    def port_rates(self) -> list:
        """Bytes per cycle of each port used, alone (exact)."""
        word_bytes = self._config.bytes_per_word
        return [self._model.port_bytes_per_cycle(i, self._clock_hz, word_bytes)
                for i in range(self._ports)]

    def elaborate(self, platform):
        m = Module()
        config, model, clock_hz = self._config, self._model, self._clock_hz
        readers, writers = self._storage_ports(m)
        m.submodules.shared = shared = SharedBandwidth(
            self._ports, config.bytes_per_word, model.group_caps(self._ports, clock_hz))
        for i, (port, rate) in enumerate(zip(self.port, self.port_rates())):
            delay = CommandDelay(config, model.latency_cycles(i, clock_hz), capacity=16)
            limiter = BandwidthLimiter(config.bytes_per_word, rate)
            reader, writer = readers[i], writers[i]
            m.submodules[f"delay{i}"], m.submodules[f"bandwidth{i}"] = delay, limiter
            connect(m, flipped(port.read_cmd), delay.i)
            connect(m, delay.o, reader.cmd)
            connect(m, reader.read_data, flipped(port.read_data))
            connect(m, flipped(port.write_cmd), writer.cmd)
            connect(m, flipped(port.write_data), writer.write_data)
            connect(m, writer.write_done, flipped(port.write_done))
            m.d.comb += [
                limiter.read_request.eq(reader.word_request),
                limiter.write_request.eq(writer.word_request),
                reader.word_grant.eq(limiter.read_grant),
                writer.word_grant.eq(limiter.write_grant),
                shared.request[i].eq(limiter.wants),
                limiter.allow.eq(shared.allow[i]),
            ]
            with m.If(port.read_data.valid & port.read_data.ready):
                m.d.sync += self.read_words[i].eq(self.read_words[i] + 1)
            with m.If(port.write_data.valid & port.write_data.ready):
                m.d.sync += self.written_words[i].eq(self.written_words[i] + 1)
        return m

    def _storage_ports(self, m):
        """A WordReader and a WordWriter per port, all on one storage."""
        config, depth, n = self._config, self._depth, self._ports
        readers = [WordReader(config, depth) for _ in range(n)]
        writers = [WordWriter(config, depth) for _ in range(n)]
        for i in range(n):
            m.submodules[f"reader{i}"], m.submodules[f"writer{i}"] = readers[i], writers[i]
        if self._storage == "memory":
            m.submodules.storage = storage = Memory(shape=unsigned(config.data_width),
                                                    depth=depth, init=self._init)
            for reader, writer in zip(readers, writers):
                connect(m, reader.mem, storage.read_port())
                connect(m, writer.mem, storage.write_port())
            return readers, writers
        width = config.data_width
        rd_data = Signal(n * width)
        m.submodules.storage = Instance(
            "tritium_backdoor_ram",
            p_WIDTH=width, p_ADDR=ceil_log2(depth), p_DEPTH=depth, p_PORTS=n,
            i_clk=ClockSignal(), i_load=self.load,
            i_rd_addr=Cat(*(reader.mem.addr for reader in readers)),
            i_rd_en=Cat(*(reader.mem.en for reader in readers)),
            o_rd_data=rd_data,
            i_wr_addr=Cat(*(writer.mem.addr for writer in writers)),
            i_wr_en=Cat(*(writer.mem.en for writer in writers)),
            i_wr_data=Cat(*(writer.mem.data for writer in writers)))
        for i, reader in enumerate(readers):
            m.d.comb += reader.mem.data.eq(rd_data[i * width:(i + 1) * width])
        return readers, writers

