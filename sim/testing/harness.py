"""Test and benchmark harnesses: hardware blocks wired to a memory model, for cocotb
tests and benchmarks (the product's simulated top is ``sim/backend/harness.py``).

A harness is gateware built only for simulation; it lives here, not in ``hw/``, because
no board instantiates it.
"""

from amaranth import C, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from tritium.hw.attention.block import AttentionBlock
from tritium.hw.attention.kvcache import KVLayout
from tritium.hw.config import rope_rows
from tritium.hw.memory import BoardMemory, OnChipMemory, SimMemory
from tritium.hw.memory.arbiter import PortArbiter
from tritium.hw.memory.port import MemoryPortSignature
from tritium.hw.tlmm.core import COUNTERS, TLMMCore, core_members

__all__ = ["TLMMHarness", "AttentionHarness", "WideReads", "load_signature"]

WRITE_CHANNELS = ("write_cmd", "write_data", "write_done")


def load_signature(memory):
    """The memory's write channels, as the port through which a testbench stores data."""
    port = MemoryPortSignature(memory)
    return wiring.Signature({name: port.members[name].flip() for name in WRITE_CHANNELS}).flip()


class TLMMHarness(wiring.Component):
    """A :class:`TLMMCore` reading from a :class:`SimMemory` of given bandwidth and latency.

    The core's job, activation and result streams are ports; so are the memory's write
    channels (``load__write_cmd``, ``load__write_data``, ``load__write_done``), through
    which the testbench stores packed weights before it starts jobs.
    """

    def __init__(self, config, memory, depth, bytes_per_cycle, latency, burst=64):
        self._args = (config, memory, depth, bytes_per_cycle, latency, burst)
        members = core_members(config, memory)
        del members["memory"]
        members["load"] = In(load_signature(memory))
        members["read_words"] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config, memory, depth, bytes_per_cycle, latency, burst = self._args
        m.submodules.core = core = TLMMCore(config, memory, burst)
        m.submodules.memory = ram = SimMemory(memory, depth, bytes_per_cycle=bytes_per_cycle,
                                              latency=latency)
        for name in ("job", "acts"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(core, name))
        wiring.connect(m, core.results, wiring.flipped(self.results))
        wiring.connect(m, core.memory.read_cmd, ram.port.read_cmd)
        wiring.connect(m, ram.port.read_data, core.memory.read_data)
        _connect_writes(m, wiring.flipped(self.load), ram.port)
        for name in COUNTERS + ("fetched_words",):
            m.d.comb += getattr(self, name).eq(getattr(core, name))
        m.d.comb += [self.read_words.eq(ram.read_words),
                     core.memory.write_cmd.ready.eq(0), core.memory.write_data.ready.eq(0),
                     core.memory.write_done.valid.eq(0)]
        return m


class AttentionHarness(wiring.Component):
    """An :class:`AttentionBlock` with its KV cache in a memory model.

    On-chip memory when ``bytes_per_cycle`` and ``board`` are None; a :class:`SimMemory`
    of ``bytes_per_cycle`` and ``latency`` (an external DDR); or, with ``board`` =
    ``(memory model, clock_hz)``, port 0 of a :class:`BoardMemory` of that model with
    backdoor storage (``backdoor_load``, for the full-size shapes, whose cache would
    otherwise be a zero image megabytes long in the Verilog). The block's job, QKV,
    score-scale and output ports are the harness's; ``busy_cycles`` counts cycles with a
    job in the block. While ``loading`` is high the memory's write channels belong to
    the ``load`` port (the block's writes wait), so a testbench can store a prefilled
    cache image (``sim.attention_tb.cache_image``) without running the prompt through
    the block. With ``rope_in_memory`` the block reads RoPE's table from the memory at
    :attr:`rope_base` (word 0), where the testbench stores
    ``host.compiler.rope_table_image`` the same way, and the cache follows it. With
    ``key_port_words`` > 1 the block reads the cache through a port that many words
    wide (as a design with ``kv_reads = "weights"``), here a :class:`WideReads` sharing
    the memory's one port with the block's own through a :class:`PortArbiter`.
    :attr:`kv_layout` is the cache's layout either way.
    """

    def __init__(self, model, config, memory, max_queries=8, bytes_per_cycle=None, latency=0,
                 board=None, rope_in_memory=False, key_port_words=1):
        rope_words = (model.max_context * rope_rows(model, config.io_lanes)
                      if rope_in_memory else 0)
        #: Word address of RoPE's table (``rope_in_memory``), else None.
        self.rope_base = 0 if rope_in_memory else None
        #: The cache's layout: after the table, records padded to ``key_port_words`` words.
        kv_base = -(-rope_words // key_port_words) * key_port_words
        self.kv_layout = KVLayout(config, memory, kv_base, key_port_words)
        self._block = block = AttentionBlock(model, config, memory, max_queries,
                                             kv_base=self.kv_layout.base,
                                             rope_base=self.rope_base,
                                             key_port_words=key_port_words)
        self._words = self.kv_layout.base + self.kv_layout.words
        if board is None:
            self._ram = None
            self.verilog_library = ""
        else:
            self._ram = BoardMemory(memory, self._words, *board, storage="backdoor")
            #: Verilog that the generated Verilog instantiates (``sim.backend.cosim`` builds it too).
            self.verilog_library = self._ram.verilog_library
        self._memory_args = (memory, bytes_per_cycle, latency)
        members = {name: value for name, value in block.signature.members.items()
                   if name not in ("memory", "key_memory")}
        members["busy_cycles"] = Out(32)
        members["load"] = In(load_signature(memory))
        members["loading"] = In(1)
        if board is not None:
            members["backdoor_load"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        memory, bytes_per_cycle, latency = self._memory_args
        m.submodules.block = block = self._block
        depth = self._words
        if self._ram is not None:
            m.submodules.memory = board = self._ram
            m.d.comb += board.load.eq(self.backdoor_load)
            port = board.port[0]
        elif bytes_per_cycle is None:
            m.submodules.memory = ram = OnChipMemory(memory, depth)
            port = ram.port
        else:
            m.submodules.memory = ram = SimMemory(memory, depth, bytes_per_cycle=bytes_per_cycle,
                                                  latency=latency)
            port = ram.port
        if self.kv_layout.align > 1:
            m.submodules.arbiter = arbiter = PortArbiter(memory, 2)
            m.submodules.wide_reads = wide = WideReads(memory, self.kv_layout.align)
            wiring.connect(m, block.key_memory, wide.client)
            wiring.connect(m, wide.memory, arbiter.client[1])
            wiring.connect(m, arbiter.memory, port)
            port = arbiter.client[0]
        for name in ("read_cmd", "read_data"):
            wiring.connect(m, getattr(block.memory, name), getattr(port, name))
        with m.If(self.loading):
            _connect_writes(m, wiring.flipped(self.load), port)
        with m.Else():
            _connect_writes(m, block.memory, port)
        for name in ("job", "qkv"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(block, name))
        wiring.connect(m, block.out, wiring.flipped(self.out))
        m.d.comb += [block.score_scale.eq(self.score_scale), self.error.eq(block.error)]
        with m.If(~block.job.ready):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        return m


class WideReads(wiring.Component):
    """A read-only port ``ratio`` (a power of two) words wide on one port of ``memory``'s
    words, for harnesses: wide word ``a`` is words ``ratio * a`` .. ``ratio * a + ratio
    - 1``, the lowest-addressed in the low bits (:meth:`MemoryConfig.widened`; a design's
    wide ports are striped across board ports instead: ``hw/memory/stripe.py``). A read
    word per cycle; the client's write channels are never ready.

    Members
    -------
    client : ``In(MemoryPortSignature(memory.widened(ratio)))``
    memory : ``Out(MemoryPortSignature(memory))`` (reads only)
    """

    def __init__(self, memory, ratio):
        self._width, self._ratio = memory.data_width, ratio
        super().__init__({"client": In(MemoryPortSignature(memory.widened(ratio))),
                          "memory": Out(MemoryPortSignature(memory))})

    def elaborate(self, platform):
        m = Module()
        width, ratio, shift = self._width, self._ratio, exact_log2(self._ratio)
        command, narrow = self.client.read_cmd, self.memory.read_cmd
        m.d.comb += [narrow.valid.eq(command.valid), command.ready.eq(narrow.ready),
                     narrow.payload.addr.eq(Cat(C(0, shift), command.payload.addr)),
                     narrow.payload.words.eq(Cat(C(0, shift), command.payload.words))]
        word, wide = self.memory.read_data, self.client.read_data
        part = Signal(range(ratio))
        take = word.valid & word.ready
        m.d.comb += word.ready.eq(~wide.valid | wide.ready)
        with m.If(wide.ready):
            m.d.sync += wide.valid.eq(0)
        with m.If(take):
            # Words shift in from the top: the first of a wide word ends up lowest.
            m.d.sync += [wide.payload.data.eq(Cat(wide.payload.data[width:], word.payload.data)),
                         part.eq(part + 1)]
            with m.If(part == ratio - 1):
                m.d.sync += [wide.valid.eq(1), wide.payload.last.eq(word.payload.last),
                             part.eq(0)]
        return m


def _connect_writes(m, writer, port):
    """Give ``writer``'s write channels to the memory ``port`` (under the current m.If)."""
    for name in WRITE_CHANNELS:
        wiring.connect(m, getattr(writer, name), getattr(port, name))
