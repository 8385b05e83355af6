# amaranth: UnusedElaboratable=no
"""The analytic performance model: cycles, bytes and seconds of any run, from shapes alone.

What it models (docs/performance.md, "The analytic model", has the derivation and the
calibration): the controller runs the program (:func:`~tritium.host.compiler.program_fields`,
the very instructions :func:`~tritium.host.compiler.compile_model` writes, built from the
config alone) one instruction at a time: fetch, decode, issue, wait until the unit's last
result is stored. Each instruction's cycles are the sum of named terms that follow the
gateware: the fetch of its words, the memory's latency before a first word, the port's
rate for every word it moves (:class:`PortTiming`, from a
:class:`~tritium.hw.memory_model.MemoryModel`), the TLMM engine's weight and compute
bounds chunk by chunk (:func:`linear_cycles`), the scratchpad reader's three beats in
four cycles, NORM's second pass, the attention block's passes
(:func:`~tritium.hw.attention.block.pass_key_counts`) and its KV records
(:class:`~tritium.hw.attention.kvcache.KVLayout`), the head unit's pass over the LM head
(:func:`head_terms`, :class:`~tritium.hw.head_layout.HeadLayout`), and a few constant
pipeline overheads calibrated against the cycle-accurate simulation (:data:`CALIBRATION`;
HEAD's is derived from the unit's documented pipeline until a simulation fits it).

- :func:`estimate_run` -> :class:`RunEstimate`: cycles per controller counter kind and in
  total, memory bytes read and written per kind, per instruction terms, for a run of
  ``tokens`` tokens from ``position`` (a prefill chunk or a decode step).
- :func:`compare_run` and :func:`simulated_cases`: the model against simulated counters
  (``bench/e2e.py``'s runs, ``docs/bench-layer-kv260.json``'s cases).
- :func:`project`: a whole model on a board: decode tokens/s per context, time to first
  token, the time per token split into linears, attention, element-wise, control, the
  device's LM head (a design with ``head = "device"``), the host's LM head and the host
  link (each figure labelled ``derived`` or ``assumed``), and the
  memory roofline of the same bytes. Host-side costs come from a :class:`HostModel`
  (:data:`HOSTS`), whose every figure is an explicit assumption.
- :func:`fit_problems`, :func:`derive_config`, :func:`board_setup`: whether a model fits a
  design, and the board preset resized to a model that it does not fit.
"""

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction

from tritium.hw.attention.block import pass_blocks, pass_key_counts
from tritium.hw.attention.core import FINISH_WAIT, SCORE_LATENCY, dot_latency
from tritium.hw.attention.kvcache import kv_layout
from tritium.hw.config import ACCELERATOR_PRESETS, AcceleratorConfig, ModelConfig, TLMMConfig
from tritium.hw.control.controller import (CONTROLLER_COUNTERS, COUNTER_OF_OPCODE,
                                          WORD_COUNTERS)
from tritium.hw.control.interface import weight_clients
from tritium.hw.control.isa import (FLAG_ACCUMULATE, FLAG_AT_STEP, FLAG_GATE, FLAG_NEXT,
                                    FLAG_ONE_TOKEN, design_steps)
from tritium.hw.elementwise import Dequantize, Gating, NormQuant, RoPE
from tritium.hw.head_layout import head_layout_of
from tritium.hw.memory.arbiter import PortArbiter
from tritium.hw.memory.mux import UNIT_PORT_LATENCY, WEIGHT_PORT_LATENCY
from tritium.hw.memory.onchip import read_latency
from tritium.hw.tlmm.core import TLMMCore
from tritium.hw.tlmm.engine import table_lookup
from tritium.hw.tlmm.lookup import fill_cycles
from tritium.hw.weights import JOB_STAGES, WordQueue
from tritium.hw.memory.simmodel import SIM_MEMORY_PIPELINE_CYCLES
from tritium.hw.memory.fabric import BoardPorts
from tritium.hw.memory_model import MEMORY_MODELS, MemoryModel
from .compiler import instruction_words, matrix_words, memory_plan, program_fields

__all__ = ["KINDS", "CALIBRATION", "onchip_read_latency", "PortTiming", "port_timing",
           "InstructionEstimate", "RunEstimate", "estimate_run", "linear_cycles",
           "attention_key_cycles", "Recorded", "head_terms", "head_words",
           "SimulatedCase", "simulated_cases", "report_cases", "recorded_cases",
           "RECORDED_REPORTS", "compare_run", "agreement",
           "HostModel", "HOSTS", "link_traffic", "host_run_seconds", "decode_steps",
           "fit_problems", "derive_config", "board_setup", "BoardSetup", "project",
           "format_projection", "plot_projection", "LABELS", "PARTS"]

#: GATE's counter kind, retired with the opcode (the FFN gating is a LINEAR's): the
#: reports recorded with GATE apart counted it, and the model of their programs does.
RETIRED_KINDS = ("gate",)
#: Counter kinds of the controller, in its order: ``fetch``, ``move``, ``norm``,
#: ``linear``, ``attend``, ``head`` (``<kind>_cycles`` in CONTROLLER_COUNTERS), then
#: the retired ones.
KINDS = tuple(name[:-len("_cycles")] for name in CONTROLLER_COUNTERS
              if name.endswith("_cycles") and name != "cycles") + RETIRED_KINDS
#: The kinds that move memory words (``<kind>_words`` in WORD_COUNTERS).
WORD_KINDS = tuple(name[:-len("_words")] for name in WORD_COUNTERS)
#: Each opcode's counter kind: the controller's counter it adds to, without "_cycles"
#: (GATE: the recorded programs').
_KIND_OF = {op: counter[:-len("_cycles")]
            for op, counter in COUNTER_OF_OPCODE.items()} | {"GATE": "gate"}

def onchip_read_latency(config: AcceleratorConfig) -> int:
    """Cycles from an OnChipMemory read command's transfer to its first word
    (docs/memory.md): 2, or 4 for a memory deep enough to be banked."""
    return 1 + read_latency(config.memory_words)

#: What every figure of a projection is (docs/performance.md).
LABELS = {"simulated": "cycle-accurate simulation of the generated Verilog",
          "derived": "the analytic model (calibrated against the simulation) or arithmetic",
          "assumed": "an explicit assumption (a host or link figure no board has measured)"}

#: Constant overheads the structure does not give, calibrated against the per-instruction
#: cycles of the simulated top (docs/performance.md, "Calibration"): cycles an
#: instruction spends besides its streams.
CALIBRATION = {
    # Fetch: the fetch state (the read command) and the decode state.
    "fetch": 2,
    # LOAD: the issue cycle before the read command, the writer's cycle after the last word.
    "load": 2,
    # STORE: issue, the reader's first beat, the write command and write_done.
    "store": 5,
    # EMBED: issue, the reader's first id beat, the fetcher's id and address cycles,
    # the widener and the writer's cycle after the last beat; the rows' reads then follow
    # each other without a gap (a row is longer than the fetcher's three cycles a token).
    "embed": 8,
    # NORM: issue and the join of values and gains before pass 1; after it, the
    # codes latency, pass 2 of the last vector and its padding are structural.
    "norm": 4,
    # NORM of the next LINEAR's output (FLAG_NEXT): issue, and the gain buffer's last
    # write before it says filled (``norm_next``). That LINEAR then ends with the norm's
    # codes latency and the last vector's pass 2 (structural) after its last beat, which
    # cover the LINEAR's own cycles after that beat (``norm_fused``, fitted on
    # docs/bench-e2e-tiny.json: 11 such LINEARs a run, prefill and decode).
    "norm_next": 3,
    "norm_fused": -4,
    # GATE: issue and the reader's first beats; the gating latency is the unit's own.
    "gate": 5,
    # LINEAR: issue, gearbox, chunk buffer, the engine's accumulate stage and the
    # writer; the table look-up's stages and Dequantize's latency are structural terms.
    "linear": 8,
    # LINEAR with ACCUMULATE: the residual add's stage.
    "accumulate": 1,
    # ATTEND: per job, besides the last head's RoPE and quantizer latencies (structural
    # terms): issue, the writer's acknowledgement; per pass over the cache: the block's
    # queries loaded and the pass's start and end (``attend_pass``: with the core's
    # passes overlapped, where the pipelines and the finish run beside the next pass;
    # ``attend_serial_pass`` for the reports of the core that ran them one at a time,
    # besides its pipeline fill).
    "attend_job": 2,
    "attend_pass": 7,
    "attend_serial_pass": 11,
    # ATTEND's passes back to back (:func:`_attend_passes`), fitted on single ATTENDs
    # of the kv260 design (bench/instructions.py, 1 and 8 tokens at positions 0, 8
    # and 56: every one within 1.5%): the KV reader's stages from a pass's request to
    # its first key at the core, beyond the port's read latency (``attend_read``); from
    # a block's last key in to its next block's first query taken (``attend_next``:
    # the keys' end flag, the state change); the update queue's and the value FIFO's
    # stages before the value stage (``attend_apply``).
    "attend_read": 18,
    "attend_next": 2,
    "attend_apply": 5,
    # HEAD: the unit's score pipeline (4 + ceil(log2(n)) cycles after the last word) is a
    # structural term of its own (:func:`head_terms`); the rest, fitted on the tiny
    # design on chip (bench/instructions.py: 1,081 cycles simulated at 1 and at 8
    # tokens), is the issue cycle, the codes reader's start and its queue, the head
    # words' first read behind the codes, the keeper's register and state change
    # before the first entry and the writer's last cycle.
    "head": 12,
    # PREFETCH: its command is taken in the cycle after the decode and ``done`` is looked
    # at two cycles later (the sequencer's timing): three cycles besides its fetch.
    "prefetch": 3,
    # While the weight prefetcher reads: an ATTEND pass's records wait behind its
    # bursts in flight (fitted on the kv260 decode layer: with the passes back to back
    # on the layer's total at contexts 64 to 2048, its ATTEND 1,150 cycles above the
    # single instruction's at context 64 and 340 at 512 to 2048, over 16 passes; with
    # the passes one at a time, at context 64: 586 cycles), and an instruction's fetch,
    # through the units' port, shares the board ports with it (188 cycles over 23
    # fetches).
    "prefetch_pass_wait": 54,
    "prefetch_serial_pass_wait": 37,
    "prefetch_fetch_wait": 8,
}

# The scratchpad's VectorReader hands out a beat per cycle: its FIFO of 4 and the read
# in flight cover the 4 cycles a beat takes from issue to leaving the FIFO. Before
# issue 18 it kept one place of the FIFO free, 3 beats per 4 cycles
# (RECORDED_READER_RATE, the rate of the reports recorded then).
READER_RATE = Fraction(1)
RECORDED_READER_RATE = Fraction(3, 4)


@functools.lru_cache(maxsize=None)
def _gating_latency(lanes: int, activation: str) -> int:
    """The Gating unit's latency for the model's activation (the unit's own figure)."""
    return Gating(lanes, activation).latency


@functools.lru_cache(maxsize=None)
def _dequantize_latency(lanes: int, acc_width: int) -> int:
    """Dequantize's latency for the engine's accumulator width (the unit's own figure)."""
    return Dequantize(lanes, acc_width).latency


@dataclass(frozen=True)
class Recorded:
    """What the hardware of a recorded report did that its design's fields do not say:
    ``finish_lanes``, the dimensions a beat of the attention core's results held (None:
    ``io_lanes``, as now); ``padded_records``, each KV record padded to whole words of the
    port that read it (as before records straddled its words); ``reader_rate``, the
    scratchpad reader's beats per cycle (:data:`READER_RATE`, or
    :data:`RECORDED_READER_RATE` before it handed out a beat a cycle); ``serial_passes``,
    the attention core's passes one at a time (before a pass overlapped the finish and the
    pipelines of the one before); ``separate_gate``, the FFN gating an instruction of its
    own, GATE after the LINEAR of ``w_up`` (before that LINEAR gated, ``FLAG_GATE``);
    ``separate_norms``, each NORM after the LINEAR whose output it norms, reading it back
    (before those NORMs came before it with ``FLAG_NEXT``); ``late_loads``, the chunk
    buffer loading a matrix only once its LINEAR came (before it loaded the next matrix
    as soon as it was done with the last); ``single_step``, a program without the STORE
    of the choice that the next step reads (before a run could make several steps)."""
    finish_lanes: int = None
    padded_records: bool = False
    reader_rate: Fraction = READER_RATE
    serial_passes: bool = False
    separate_gate: bool = False
    separate_norms: bool = False
    late_loads: bool = False
    single_step: bool = False

    def is_current(self, config: AcceleratorConfig) -> bool:
        """Whether the hardware recorded is ``config``'s as it is built now: the defaults,
        but for results as wide as ``config``'s lanes (and what a design without a
        weight queue, or of one step, could not have done otherwise)."""
        return (self.finish_lanes in (None, config.attention.io_lanes)
                and dataclasses.replace(
                    self, finish_lanes=None,
                    late_loads=self.late_loads and bool(config.weight_queue),
                    single_step=self.single_step and design_steps(config) > 1) == Recorded())


def as_built(config: AcceleratorConfig) -> dict:
    """What a report of ``config``'s hardware as built now says of it beyond the design's
    fields (the benches write it; :func:`_recorded` reads it back)."""
    return {"attention_finish_lanes": config.attention.io_lanes, "kv_records": "packed",
            "scratch_reader": "full-rate", "attention_passes": "overlapped",
            "ffn_gating": "fused", "norms": "fused", "chunk_loads": "ahead",
            "steps": "chained"}


@functools.lru_cache(maxsize=None)
def _record_words(config: AcceleratorConfig, recorded: Recorded) -> int:
    """Bus words the writer writes per KV record (``KVLayout.words_per_record``, or
    padded to whole words of the reading port)."""
    words, align = kv_layout(config).words_per_record, config.kv_port_words
    return _round_up(words, align) if recorded.padded_records else words


def _record_read(config: AcceleratorConfig, port: "PortTiming",
                 recorded: Recorded = Recorded()) -> tuple:
    """(latency, cycles) of reading KV records: the first one's latency, and each one's
    words streaming (a fraction of a port word where records straddle them), on the port
    the design reads them through (``kv_reads``)."""
    words = Fraction(_record_words(config, recorded), config.kv_port_words)
    if config.kv_reads == "weights":
        return port.weight_latency, words * port.weight_word_cycles
    return port.latency, words * port.word_cycles


def _pass_words(config: AcceleratorConfig, counts, recorded: Recorded) -> int:
    """Bus words the passes over ``counts`` keys read: whole words of the reading port."""
    align = config.kv_port_words
    words = _record_words(config, recorded)
    return sum(_round_up(count * words, align) for count in counts)


def _reader_cycles(beats, rate: Fraction = READER_RATE) -> int:
    """Cycles the scratchpad reader takes to hand out ``beats`` beats back to back, at
    ``rate`` beats per cycle."""
    return max(0, math.ceil(beats / rate) - 1)


# -- the memory port -----------------------------------------------------------------------

@dataclass(frozen=True)
class PortTiming:
    """The memory port as the units see it: ``word_bytes`` per bus word, at most
    ``bytes_per_cycle`` sustained (exact), the first word of a read ``latency`` cycles
    after its command. ``memory`` names the model, ``implementation`` the gateware:
    ``"onchip"`` (the top's OnChipMemory, :func:`onchip_read_latency`) or ``"board"``
    (a BoardMemory simulation of the model: the model's latency plus
    ``SIM_MEMORY_PIPELINE_CYCLES``, plus the board ports' latency when the design's port
    is striped across several, :meth:`BoardPorts.latency`); either way plus the port
    registers on the unit's port and on the top's (``UNIT_PORT_LATENCY``). The TLMM's
    weights and the head come through a port ``weight_words`` bus words wide (1: the
    units' port) at ``weight_bytes_per_cycle``, its first word ``weight_latency`` cycles
    after its command (not given: the units' port's rate and latency)."""
    memory: str
    implementation: str
    word_bytes: int
    bytes_per_cycle: Fraction
    latency: int
    write_bytes_per_cycle: Fraction = None
    weight_words: int = 1
    weight_latency: int = None
    weight_bytes_per_cycle: Fraction = None

    def __post_init__(self):
        # What is not given is the units' port's own: the fields, not their readers,
        # hold the defaults.
        for name, default in (("write_bytes_per_cycle", self.bytes_per_cycle),
                              ("weight_latency", self.latency),
                              ("weight_bytes_per_cycle", self.bytes_per_cycle)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)

    @property
    def word_cycles(self) -> Fraction:
        """Cycles per bus word when words stream (at least one)."""
        return max(Fraction(1), Fraction(self.word_bytes) / self.bytes_per_cycle)

    @property
    def weight_word_cycles(self) -> Fraction:
        """Cycles per word of the weight port when words stream (at least one)."""
        return max(Fraction(1), Fraction(self.word_bytes * self.weight_words)
                   / self.weight_bytes_per_cycle)

    @property
    def write_word_cycles(self) -> Fraction:
        """Cycles per bus word written: a striped port writes through its first port
        alone (``write_bytes_per_cycle``; not given: as fast as it reads)."""
        return max(Fraction(1), Fraction(self.word_bytes) / self.write_bytes_per_cycle)


def port_timing(memory, config: AcceleratorConfig, port: int = 0,
                implementation: str = None) -> PortTiming:
    """Port ``port`` of ``memory`` (a :class:`MemoryModel` or its name) for ``config``.

    ``implementation`` defaults to ``"onchip"`` for the ``onchip`` model (the top keeps its
    memory inside) and ``"board"`` for any other (a board memory behind the top's port,
    simulated by BoardMemory). A board design with ``memory_ports`` > 1 reads through
    the model's first ``memory_ports`` ports, striped (``port`` must then be 0): the
    units' port at the sustained rate of its ``units_ports``, the weight port at all
    of theirs, port 0's latency and the board ports' (:meth:`BoardPorts.latency`)."""
    model = MEMORY_MODELS[memory] if isinstance(memory, str) else memory
    if implementation is None:
        implementation = "onchip" if model is MEMORY_MODELS["onchip"] else "board"
    if implementation not in ("onchip", "board"):
        raise ValueError(f"implementation must be 'onchip' or 'board', not {implementation!r}")
    word_bytes = config.data_width // 8
    pipeline = (onchip_read_latency(config) if implementation == "onchip"
                else SIM_MEMORY_PIPELINE_CYCLES)
    rate = write_rate = weight_rate = model.port_bytes_per_cycle(port, config.clock_hz,
                                                                 word_bytes)
    fabric = {"units": 0, "weights": 0}
    if implementation == "board" and config.memory_ports > 1:
        if port != 0:
            raise ValueError(f"a design striped across {config.memory_ports} ports uses "
                             f"ports 0 .. {config.memory_ports - 1}, not port {port} alone")
        rate = model.sustained_bytes_per_cycle(config.units_ports, config.clock_hz, word_bytes)
        weight_rate = model.sustained_bytes_per_cycle(config.memory_ports, config.clock_hz,
                                                      word_bytes)
        fabric = BoardPorts.latency(config)
        # A weight-port word waits for its last bus word from one port.
        fabric["weights"] += (config.weight_port_words - 1) * round(word_bytes / write_rate)
    latency = model.latency_cycles(port, config.clock_hz) + pipeline
    weights = WEIGHT_PORT_LATENCY if config.weight_port else UNIT_PORT_LATENCY
    if config.weight_queue and len(weight_clients(config)) > 1:
        weights += PortArbiter.LATENCY          # the weight port's clients share it
    return PortTiming(memory=model.name, implementation=implementation, word_bytes=word_bytes,
                      bytes_per_cycle=rate,
                      latency=latency + UNIT_PORT_LATENCY + fabric["units"],
                      write_bytes_per_cycle=write_rate,
                      weight_words=config.weight_port_words,
                      weight_latency=latency + weights + fabric["weights"],
                      weight_bytes_per_cycle=weight_rate)


# -- instructions ---------------------------------------------------------------------------

@dataclass
class InstructionEstimate:
    """One instruction of a run: its opcode, counter kind, cycles executing (``cycles``,
    the issue and wait states) and fetching (``fetch``), memory words read and written,
    and the named terms its cycles are the sum of."""
    op: str
    kind: str
    cycles: float
    fetch: float
    read_words: int = 0
    written_words: int = 0
    terms: dict = field(default_factory=dict)


def _terms(**terms) -> tuple:
    return float(sum(terms.values())), {name: float(value) for name, value in terms.items()}


def linear_cycles(config: AcceleratorConfig, port: PortTiming, chunks: int, blocks: int,
                  tokens: int, flags: int = 0, queued: int = None,
                  reader_rate: Fraction = READER_RATE, preloaded: int = 0) -> dict:
    """The named terms of one LINEAR (``chunks`` K-chunks, ``blocks`` row blocks).

    ``stream``: the chunk pipeline of the weight buffer manager and the engine. Chunk
    ``c`` loads into bank ``c % 2`` once chunk ``c - 1`` is loaded and chunk ``c - 2``
    replayed, at ``k`` cycles per engine word (its bus words at the port's rate, at
    least one a cycle); its first pass streams behind the load, its other
    ``tokens - 1`` passes replay it at one word per cycle; a pass lasts at least a
    sweep (``blocks`` cycles), an activation beat (the codes feeder reads
    ``k_per_word / lanes`` codes beats per beat) and, with LUT-RAM tables, a table
    set's write (:func:`~tritium.hw.tlmm.lookup.fill_cycles`). The last chunk's passes
    also last their results' vector beats, one a cycle (``beats_per_block`` a row block
    when the engine's rows are wider than the lanes), and with ACCUMULATE (``flags``) as
    many residual beats from the scratchpad reader (``reader_rate`` a cycle), with GATE as
    many beats of the gate vector. ``latency``: the issue cycle and the memory's read
    latency before the first word. ``table_fill``: the first table set when it is ready
    after the first weight word. ``gating``: with GATE, the gating unit's latency.
    ``pipeline``: calibrated (:data:`CALIBRATION`).

    ``queued`` (a design with a weight queue; None without): the matrix's engine words
    already in the queue when the LINEAR starts. Those load as fast as the gearbox takes
    the port's words, one a cycle; the others arrive from the LINEAR's start on at the
    port's rate, whether or not the chunk buffer has room (the prefetcher reads on into
    the queue), so a chunk is loaded no sooner than its last word arrives; the latency
    is then the queue's (a word already there), or the memory's when none is.
    ``preloaded``: of those, the first chunk's engine words the chunk buffer had loaded
    before the LINEAR started (it loads the next matrix as soon as it is done with the
    last one: :class:`~tritium.hw.weights.WeightBufferManager`)."""
    return dict(_linear_terms(config, port, chunks, blocks, tokens,
                              flags & (FLAG_ACCUMULATE | FLAG_GATE), queued, reader_rate,
                              preloaded))


def _last_chunk_pass(config, blocks: int, flags: int, reader_rate=READER_RATE) -> Fraction:
    """Cycles of a pass over a LINEAR's last K-chunk (see :func:`linear_cycles`): a sweep,
    and its results' vector beats a cycle (with ACCUMULATE or GATE each beside a beat of
    the scratchpad reader)."""
    drain = blocks * config.beats_per_block
    residual = Fraction(drain) / reader_rate if flags & (FLAG_ACCUMULATE | FLAG_GATE) else 0
    return max(_sweep(config, blocks), drain, residual)


def _sweep(config, blocks: int) -> int:
    """Cycles of a pass over a K-chunk: its row blocks, at least the codes feeder's beat
    and, with LUT-RAM tables, a table set's write."""
    tlmm = config.tlmm
    feeder = max(1, tlmm.k_per_word // config.lanes)
    table = fill_cycles(tlmm) if tlmm.table_storage == "lutram" else 1
    return max(blocks, feeder, table)


@functools.lru_cache(maxsize=4096)
def _linear_terms(config, port, chunks, blocks, tokens, flags, queued=None,
                  reader_rate=READER_RATE, preloaded=0) -> tuple:
    tlmm, lanes = config.tlmm, config.lanes
    # The weights' port: the units' own, or the TLMM's wider one.
    w, port_bits = port.weight_word_cycles, config.data_width * port.weight_words
    latency = port.weight_latency
    k = max(Fraction(1), Fraction(tlmm.tile.word_bits, port_bits) * w)
    # Cycles per engine word from the queue: the gearbox takes a port word a cycle.
    gearbox = max(Fraction(1), Fraction(tlmm.tile.word_bits, port_bits))
    feeder = max(1, tlmm.k_per_word // lanes)
    table = fill_cycles(tlmm) if tlmm.table_storage == "lutram" else 1
    sweep = _sweep(config, blocks)
    load_end = [Fraction(0)] * chunks
    replay_end = [Fraction(0)] * chunks
    for c in range(chunks):
        load_start = max(load_end[c - 1] if c else 0, replay_end[c - 2] if c > 1 else 0)
        if queued is None:
            load_end[c] = load_start + blocks * k
        else:
            # The first chunk's ``preloaded`` words are in the chunk buffer already.
            loading = blocks - (preloaded if c == 0 else 0)
            load_end[c] = max(load_start + loading * gearbox,
                              max(0, (c + 1) * blocks - queued) * k)
        replay_start = max(replay_end[c - 1] if c else 0, load_start)
        paced = _last_chunk_pass(config, blocks, flags, reader_rate) if c == chunks - 1 else sweep
        first = max(replay_start + paced, load_end[c])
        replay_end[c] = first + (tokens - 1) * paced
    # The weight job waits JOB_STAGES cycles for its word count; each word then passes
    # the core's WORD_STAGES registers on its way to the engine. A preloaded first chunk
    # is replayed as soon as the job comes (the buffer's read).
    if queued:
        latency = WordQueue.LATENCY
    first_word = (JOB_STAGES + latency + math.ceil(tlmm.tile.word_bits / port_bits) * w
                  + TLMMCore.WORD_STAGES)
    job_latency = 1 + JOB_STAGES + latency
    if preloaded:
        first_word, job_latency = 1 + TLMMCore.WORD_STAGES, 1
    table_ready = feeder + table
    return (("latency", job_latency), ("stream", replay_end[-1]),
            ("table_fill", max(0, table_ready - first_word)),
            ("lookup", table_lookup(tlmm).LATENCY),
            ("dequantize", _dequantize_latency(lanes, tlmm.acc_width)),
            *((("gating", _gating_latency(lanes, config.model.activation)),)
              if flags & FLAG_GATE else ()),
            ("pipeline", CALIBRATION["linear"] + (CALIBRATION["accumulate"]
                                                  if flags & FLAG_ACCUMULATE else 0)))


def attention_key_cycles(config: AcceleratorConfig, port: PortTiming,
                         recorded: Recorded = Recorded()) -> Fraction:
    """Cycles per key of a pass over the KV cache, whichever is slower:

    - the attention core: a key's ``beats_per_key`` beats. Its value FIFO holds every
      beat between a key's intake and its update reaching the value stage, and the
      updates wait in a queue of their own, so the intake, the dot products, the score
      pipeline and the value stage all keep a key every ``beats_per_key`` cycles
      (docs/attention.md);
    - the KV reader: a record's ``words_per_record`` words at the rate of the port it
      reads them through (the units' port, or the weight port: ``kv_reads``)."""
    return max(Fraction(config.attention.beats_per_key),
               _record_read(config, port, recorded)[1])


def _attend_terms(config, port, position, tokens, recorded: Recorded):
    """ATTEND: with RoPE's table in memory, the job's rows of it read first (the
    memory's latency and a word per row); intake (the QKV row through the scratchpad
    reader, RoPE and the quantizers; the new records written), the first record read
    and the last written, the passes over the cache (:func:`pass_blocks`, each key
    :func:`attention_key_cycles`), and the outputs drained to the scratchpad.

    ``keys`` counts every key at its rate; ``passes`` the rest of the passes' time
    (:func:`_attend_passes`: the first read's latency, each block's load and the
    reads' latency where a block is too short to hide them, the finish where it is
    longer than the next block, the last block's pipelines and finish). Each of the
    (token, head) pairs leaves in ``f`` output beats of ``io_lanes`` (or of
    ``recorded.finish_lanes``) after the reciprocal's latency. With
    ``recorded.serial_passes`` each pass filled the pipelines and each pair left its
    lane before the next pass started (``latency``, ``passes`` and ``lanes``)."""
    a = config.attention
    finish_beats = a.head_dim // (recorded.finish_lanes or a.io_lanes)
    words = _record_words(config, recorded)
    read_latency, record = _record_read(config, port, recorded)
    key = attention_key_cycles(config, port, recorded)
    written = words * port.write_word_cycles
    qkv_beats = (a.heads + 2 * a.kv_heads) * a.io_beats_per_head
    blocks = pass_blocks(a, position, tokens)
    counts = [keys for keys, _ in blocks]
    terms = dict(
        intake=max(Fraction(_reader_cycles(tokens * qkv_beats, recorded.reader_rate)),
                   tokens * a.kv_heads * written),
        records=record + written,
        keys=sum(counts) * key)
    if recorded.serial_passes:
        pipeline = a.beats_per_key + dot_latency(a) + SCORE_LATENCY
        terms.update(latency=read_latency,
                     passes=len(counts) * (CALIBRATION["attend_serial_pass"] + pipeline),
                     lanes=tokens * a.heads * (finish_beats + FINISH_WAIT))
    else:
        # The passes' time from the first one's request to the last block's last
        # output beat, the first read's latency and the keys included.
        terms.update(passes=_attend_passes(config, read_latency, record, blocks, finish_beats)
                     - terms["keys"])
    terms.update(drain=tokens * a.heads * a.io_beats_per_head,
                 job_latency=RoPE.LATENCY + NormQuant.codes_latency,
                 pipeline=CALIBRATION["attend_job"])
    table = tokens * config.rope_rows if config.rope_table == "memory" else 0
    if table:
        terms["table"] = port.latency + table * port.word_cycles
    return terms, _pass_words(config, counts, recorded) + table, tokens * a.kv_heads * words


def _attend_passes(config, read_latency, record, blocks, finish_beats) -> Fraction:
    """Cycles from an ATTEND's first pass request to its last output beat, block by
    block (:func:`pass_blocks`: ``(keys, queries)``), as the core overlaps its passes
    (docs/attention.md, "Passes back to back"):

    - a block's queries are taken one a cycle once the block before has all its keys in
      (``attend_next`` later) and the block two before is captured (two banks);
    - its pass is requested when its first query enters the scheduler's slot (as the
      block before's last query is taken), and no sooner than the reader has finished
      the pass two before (it holds two); its keys arrive ``read_latency +
      attend_read`` cycles after the request, after the pass before's, one per
      ``record`` cycles;
    - its first key enters the core ``attend_pass`` cycles after its last query (the
      query scale's normalisation), then a key every ``beats_per_key`` cycles at most;
    - its last key is applied ``beats_per_key + dot_latency + SCORE_LATENCY +
      attend_apply`` cycles after it enters; the capture (``beats_per_key``) waits for
      that and for the finish of the block before, and each query's output then takes
      ``FINISH_WAIT + finish_beats``."""
    a = config.attention
    apply = a.beats_per_key + dot_latency(a) + SCORE_LATENCY + CALIBRATION["attend_apply"]
    read = read_latency + CALIBRATION["attend_read"]
    keys_end, data_end, captured = [], [], []
    last_taken = finished = Fraction(0)
    for index, (keys, queries) in enumerate(blocks):
        first_taken, request = Fraction(0), Fraction(0)
        if index:
            first_taken = keys_end[-1] + CALIBRATION["attend_next"]
            request = last_taken + 1
        if index > 1:
            first_taken = max(first_taken, captured[-2] + 1)
            request = max(request, data_end[-2])
        last_taken = first_taken + queries - 1
        data_start = max(request + read, data_end[-1] if index else 0)
        data_end.append(data_start + keys * record)
        start = max(last_taken + CALIBRATION["attend_pass"], data_start)
        keys_end.append(max(start + keys * a.beats_per_key, data_end[-1]))
        captured.append(max(keys_end[-1] + apply, finished) + a.beats_per_key)
        finished = captured[-1] + queries * (FINISH_WAIT + finish_beats)
    return finished


def head_words(config: AcceleratorConfig) -> int:
    """Words of the weight port (the bus's on a design without one) one HEAD reads: the
    whole head in its layout (``HeadLayout.words``, docs/head.md), whatever the run's
    tokens (it scores the last token only)."""
    return head_layout_of(config).words


def head_terms(config: AcceleratorConfig, port: PortTiming, k: int) -> dict:
    """The named terms of one HEAD returning ``k`` entries (docs/head.md, "Cycles"):

    ``codes``: the last token's ``hidden / lanes`` codes beats from the codes buffer, one
    a cycle; ``latency``: what of the memory's read latency the codes do not hide (the
    unit issues its first read when it takes the job, so the head's first words are on
    their way while the codes arrive); ``words``: the head's :func:`head_words` at the
    weight port's rate, at most one a cycle (the unit takes a word every cycle the
    memory offers one); ``score``: the last score reaches the top-k
    ``5 + ceil(log2(n / groups))`` cycles after the last word (walker, products, the
    adder trees' levels, group sums, mantissa products, row sum; ``n`` codes per
    weight-port word in ``groups`` groups); ``results``: the ``k``
    entries to the scratchpad writer, one a cycle; ``pipeline``: :data:`CALIBRATION`
    ``"head"`` (fitted on the tiny design with its memory on chip)."""
    codes = config.model.hidden // config.lanes
    layout = head_layout_of(config)
    tree = layout.codes_per_word // layout.word_groups
    return dict(codes=codes, latency=max(0, port.weight_latency - codes),
                words=layout.words * port.weight_word_cycles,
                score=5 + (tree - 1).bit_length(), results=k, pipeline=CALIBRATION["head"])


def _instruction(instr: dict, config, port: PortTiming, position: int, tokens: int,
                 fetch: float, recorded: Recorded) -> InstructionEstimate:
    op = instr["op"]
    w = port.word_cycles
    beats = instr.get("beats", 0)
    rate = recorded.reader_rate
    read = written = 0
    if op == "END":
        return InstructionEstimate(op, None, 0.0, fetch)
    if op == "LOAD":
        n = beats * tokens
        cycles, terms = _terms(latency=port.latency, words=(n - 1) * w,
                               pipeline=CALIBRATION["load"])
        read = n
    elif op == "EMBED":
        # The rows' words at the port's rate; a 16-bit table's word is two beats, which
        # the writer takes one a cycle.
        n = beats * tokens
        words = tokens * config.embedding_row_words
        cycles, terms = _terms(latency=port.latency, words=max((words - 1) * w, n - 1),
                               pipeline=CALIBRATION["embed"])
        read = words
    elif op == "STORE":
        # FLAG_ONE_TOKEN: one vector (the device head's top-k), whatever the tokens.
        n = beats if instr.get("flags", 0) & FLAG_ONE_TOKEN else beats * tokens
        words = max(_reader_cycles(n, rate), (n - 1) * port.write_word_cycles + 1)
        cycles, terms = _terms(words=words, pipeline=CALIBRATION["store"])
        written = n
    elif op == "NORM":
        # Pass 1 joins each value beat (the reader) with a gain beat (two per memory
        # word, read once per token); the last vector's codes follow its last beat by
        # the codes latency, then its pass 2 and the codes writer's zero padding.
        gain_words = -(-beats // 2)
        per_chunk = config.tlmm.k_per_word // config.lanes
        padded = _round_up(beats, per_chunk)
        if instr.get("flags", 0) & FLAG_NEXT:
            # Of the next LINEAR's output: only its gains, once, into the gain buffer, a
            # beat a cycle at most (the rest is that LINEAR's: _with_fused_norms).
            cycles, terms = _terms(latency=port.latency, gains=max(beats, gain_words * w),
                                   pipeline=CALIBRATION["norm_next"])
            read = gain_words
        else:
            cycles, terms = _terms(
                latency=max(0, port.latency - onchip_read_latency(config)),
                pass1=max(_reader_cycles(beats * tokens, rate), tokens * gain_words * w),
                codes_latency=NormQuant.codes_latency, pass2=padded,
                pipeline=CALIBRATION["norm"])
            read = tokens * gain_words
    elif op == "GATE":
        cycles, terms = _terms(beats=_reader_cycles(beats * tokens, rate),
                               gating=_gating_latency(config.lanes, config.model.activation),
                               pipeline=CALIBRATION["gate"])
    elif op == "LINEAR":
        chunks, blocks = instr["beats"], instr["blocks"]
        terms = linear_cycles(config, port, chunks, blocks, tokens, instr.get("flags", 0),
                              reader_rate=rate)
        cycles = float(sum(terms.values()))
        terms = {name: float(value) for name, value in terms.items()}
        read = matrix_words(config, chunks, blocks)
    elif op == "ATTEND":
        terms, read, written = _attend_terms(config, port, position, tokens, recorded)
        cycles, terms = _terms(**terms)
    elif op == "HEAD":
        cycles, terms = _terms(**head_terms(config, port, beats))
        read = head_words(config) * config.weight_port_words        # in bus words
    elif op == "PREFETCH":
        cycles, terms = _terms(pipeline=CALIBRATION["prefetch"])
    else:
        raise ValueError(f"unknown opcode {op!r}")
    return InstructionEstimate(op, _KIND_OF[op], cycles, fetch, read, written, terms)


def _fetch_cycles(config: AcceleratorConfig, port: PortTiming, index: int) -> float:
    """The fetch of the run's instruction ``index``: its words read (the read command, the
    memory's latency, the words) and its decode; with ``fetch_block`` > 1 only the first
    of each block reads, all the block's words, and takes a cycle more to leave the queue,
    the others leave the queue at once."""
    block = config.fetch_block
    if index % block:
        return float(CALIBRATION["fetch"])
    words = block * instruction_words(port.word_bytes)
    return float(CALIBRATION["fetch"] + (block > 1) + port.latency
                 + (words - 1) * port.word_cycles)


def _with_weight_queue(program: list, instructions: list, config: AcceleratorConfig,
                       port: PortTiming, position: int, tokens: int,
                       recorded: Recorded) -> list:
    """The instructions of a design with a weight queue, each LINEAR timed with the words
    its PREFETCH had read ahead (:func:`linear_cycles`, ``queued``).

    The prefetcher is modelled as the weight port's background client: over each
    instruction (its fetch and execution) it reads, at the port's rate, for the time the
    port's other clients leave it (ATTEND's KV records with ``kv_reads = "weights"``,
    HEAD's rows, and during a LINEAR that matrix's own words not yet read), the words of
    the matrices PREFETCHed so far, in order, while the queue has room
    (``config.weight_queue`` words of the port); it waits the memory's latency whenever it
    starts reading after it had nothing to read. While it reads, an instruction's fetch
    and ATTEND's passes wait a little more (:data:`CALIBRATION`, ``prefetch_*``)."""
    w = port.weight_word_cycles
    depth = config.weight_queue
    ratio = Fraction(config.tlmm.tile.word_bits,
                     config.data_width * config.weight_port_words)  # port words per engine word
    jobs = []               # [port words, port words read] of each matrix PREFETCHed
    idle = True             # the prefetcher has had nothing to read
    result = []
    table = tokens * config.rope_rows if config.rope_table == "memory" else 0
    # Cycles since the chunk buffer could start loading the next matrix: the run's start,
    # then each LINEAR's last chunk (its bank before is free then).
    since_load = Fraction(0)
    for fields, item in zip(program, instructions):
        if item.op == "LINEAR":
            total, queued = jobs.pop(0)
            preloaded = 0
            if not recorded.late_loads:
                preloaded = int(min(fields["blocks"], queued / ratio,
                                    (since_load + Fraction(item.fetch)) / max(1, ratio)))
            # Its stream and latency again, with the words queued and its first chunk
            # preloaded; any other term (a NORM of its output: _with_fused_norms) stays.
            terms = {**item.terms, **linear_cycles(
                config, port, fields["beats"], fields["blocks"], tokens, fields.get("flags", 0),
                queued=int(queued / ratio), reader_rate=recorded.reader_rate,
                preloaded=preloaded)}
            since_load = tokens * _last_chunk_pass(config, fields["blocks"],
                                                   fields.get("flags", 0), recorded.reader_rate)
            cycles = float(sum(terms.values()))
            item = dataclasses.replace(item, cycles=cycles,
                                       terms={n: float(v) for n, v in terms.items()})
            # Its own remaining words take the port for their time.
            busy = (total - queued) * w
        elif item.op == "ATTEND" and config.kv_reads == "weights":
            busy = Fraction(item.read_words - table, config.weight_port_words) * w
        elif item.op == "HEAD":
            busy = Fraction(item.read_words, config.weight_port_words) * w
        else:
            busy = 0
        if item.op == "PREFETCH":
            words = matrix_words(config, fields["beats"], fields["blocks"])
            jobs.append([Fraction(words, config.weight_port_words), Fraction(0)])
        waiting = [job for job in jobs if job[1] < job[0]]
        room = depth - sum(job[1] for job in jobs)
        wanted = min(sum(job[0] - job[1] for job in waiting), room) * w
        spare = Fraction(item.fetch + item.cycles) - Fraction(busy)
        if wanted:
            # Reading for part of this instruction's time (the share wanted of the spare).
            share = min(Fraction(1), wanted / spare) if spare > 0 else Fraction(1)
            fetch = item.fetch
            if fetch > CALIBRATION["fetch"]:        # (its fetch reads the memory)
                fetch += float(share * CALIBRATION["prefetch_fetch_wait"])
            extra = 0.0
            if item.op == "ATTEND":
                passes = len(pass_key_counts(config.attention, position, tokens))
                wait = CALIBRATION["prefetch_serial_pass_wait" if recorded.serial_passes
                                   else "prefetch_pass_wait"]
                extra = float(passes * share * wait)
            item = dataclasses.replace(item, fetch=fetch, cycles=item.cycles + extra)
            if idle:
                spare -= port.weight_latency
        idle = not waiting
        for job in waiting:
            if spare <= 0 or room <= 0:
                break
            words = min(job[0] - job[1], spare / w, room)
            job[1] += words
            spare -= words * w
            room -= words
        since_load += Fraction(item.fetch + item.cycles) if item.op != "LINEAR" else 0
        result.append(item)
    return result


# -- runs ----------------------------------------------------------------------------------

@dataclass
class RunEstimate:
    """The model's figures for one run (see :func:`estimate_run`).

    ``cycles`` is the run's total (every instruction's fetch and execution);
    ``by_kind[kind]`` the cycles the controller counts as ``<kind>_cycles``;
    ``words[kind]`` the memory words ``{"read": n, "written": n}`` of that kind;
    ``instructions`` the per-instruction estimates.
    """
    config: str
    memory: str
    implementation: str
    position: int
    tokens: int
    clock_hz: int
    word_bytes: int
    cycles: float
    by_kind: dict
    words: dict
    instructions: list

    @property
    def seconds(self) -> float:
        return self.cycles / self.clock_hz

    @property
    def bytes_read(self) -> dict:
        return {kind: words["read"] * self.word_bytes for kind, words in self.words.items()}

    @property
    def bytes_written(self) -> dict:
        return {kind: words["written"] * self.word_bytes for kind, words in self.words.items()}

    @property
    def bytes_moved(self) -> int:
        return sum(w["read"] + w["written"] for w in self.words.values()) * self.word_bytes

    def counters(self) -> dict:
        """The figures under the controller's counter names (cycles rounded), and a
        retired kind's where the program has its instruction (a recorded design's)."""
        counters = {"cycles": round(self.cycles)}
        counters.update({f"{kind}_cycles": round(self.by_kind[kind]) for kind in KINDS
                         if kind not in RETIRED_KINDS or self.by_kind[kind]})
        counters.update({f"{kind}_words": self.words[kind]["read"] + self.words[kind]["written"]
                         for kind in WORD_KINDS})
        return counters

    def to_dict(self) -> dict:
        return {"config": self.config, "memory_model": self.memory,
                "implementation": self.implementation, "position": self.position,
                "tokens": self.tokens, "cycles": round(self.cycles, 1),
                "cycles_by_kind": {k: round(v, 1) for k, v in self.by_kind.items()},
                "bytes_read": self.bytes_read, "bytes_written": self.bytes_written,
                "seconds": self.seconds}


def estimate_run(config: AcceleratorConfig, memory="onchip", position: int = 0,
                 tokens: int = 1, implementation: str = None, port: int = 0,
                 head: bool = None, recorded: Recorded = Recorded()) -> RunEstimate:
    """The model of one run of ``config``'s program: ``tokens`` (1 .. max_tokens) tokens
    from ``position``, the memory on port ``port`` of ``memory`` (the top uses one port,
    port 0); ``head`` False runs a device-head design's program without the head (a
    prompt's runs before its last); ``recorded`` says what a recorded report's hardware
    did that its design's fields do not. Needs no weights: the program comes from the
    shape (:func:`~tritium.host.compiler.program_fields`)."""
    if not 1 <= tokens <= config.max_tokens:
        raise ValueError(f"a run takes 1 .. {config.max_tokens} tokens, not {tokens}")
    if position < 0 or position + tokens > config.attention.capacity:
        raise ValueError(f"positions {position} .. {position + tokens - 1} exceed the KV "
                         f"cache's {config.attention.capacity} tokens")
    timing = port_timing(memory, config, port, implementation)
    iw = instruction_words(timing.word_bytes)
    program = program_fields(config, head=head)
    if recorded.single_step:
        program = [fields for fields in program
                   if not (fields["op"] == "STORE" and fields.get("flags", 0) & FLAG_AT_STEP)]
    if recorded.separate_norms:
        program = _with_separate_norms(program)
    if recorded.separate_gate:
        program = _with_separate_gate(config, program)
    instructions = [_instruction(instr, config, timing, position, tokens,
                                 _fetch_cycles(config, timing, index), recorded)
                    for index, instr in enumerate(program)]
    instructions = _with_fused_norms(program, instructions, config, tokens)
    if config.weight_queue:
        instructions = _with_weight_queue(program, instructions, config, timing, position,
                                          tokens, recorded)
    by_kind = {kind: 0.0 for kind in KINDS}
    words = {kind: {"read": 0, "written": 0} for kind in WORD_KINDS}
    block = config.fetch_block
    words["fetch"]["read"] = _round_up(len(instructions), block) * iw
    for item in instructions:
        by_kind["fetch"] += item.fetch
        if item.kind:
            by_kind[item.kind] += item.cycles
        if item.read_words or item.written_words:
            words[item.kind]["read"] += item.read_words
            words[item.kind]["written"] += item.written_words
    return RunEstimate(config=config.name, memory=timing.memory,
                       implementation=timing.implementation, position=position,
                       tokens=tokens, clock_hz=config.clock_hz, word_bytes=timing.word_bytes,
                       cycles=sum(by_kind.values()), by_kind=by_kind, words=words,
                       instructions=instructions)


def _with_separate_norms(program: list) -> list:
    """``program`` as the compiler wrote it before a NORM of a LINEAR's output came before
    that LINEAR (``FLAG_NEXT``): each such NORM just after its LINEAR, plain."""
    result, waiting = [], None
    for fields in program:
        if fields["op"] == "NORM" and fields.get("flags", 0) & FLAG_NEXT:
            waiting = {**fields, "flags": 0}
            continue
        result.append(fields)
        if fields["op"] == "LINEAR" and waiting:
            result.append(waiting)
            waiting = None
    return result


def _with_fused_norms(program: list, instructions: list, config: AcceleratorConfig,
                      tokens: int) -> list:
    """The instructions with each LINEAR after a NORM of its output (``FLAG_NEXT``) timed
    to the end of that norm: its last vector's codes ``NormQuant.codes_latency`` after its
    last beat, then that vector's pass 2 (its beats to whole TLMM chunks, ``B'``); the
    vectors come a beat a cycle, so each pass 2 of ``B'`` beats behind a vector of ``B``
    pushes the next one ``B' - B`` later."""
    result, norm = [], None
    per_chunk = config.tlmm.k_per_word // config.lanes
    for fields, item in zip(program, instructions):
        if fields["op"] == "NORM" and fields.get("flags", 0) & FLAG_NEXT:
            norm = fields
        elif fields["op"] == "LINEAR" and norm:
            padded = _round_up(norm["beats"], per_chunk)
            terms = dict(item.terms, norm=float(NormQuant.codes_latency + padded
                                                + (tokens - 1) * (padded - norm["beats"])
                                                + CALIBRATION["norm_fused"]))
            item = dataclasses.replace(item, cycles=float(sum(terms.values())), terms=terms)
            norm = None
        result.append(item)
    return result


def _with_separate_gate(config: AcceleratorConfig, program: list) -> list:
    """``program`` as the compiler wrote it before the LINEAR of ``w_up`` gated: that
    LINEAR plain, then a GATE of its output's beats (the recorded reports' hardware)."""
    result = []
    for fields in program:
        if fields["op"] == "LINEAR" and fields.get("flags", 0) & FLAG_GATE:
            result.append({**fields, "flags": fields["flags"] & ~FLAG_GATE})
            result.append(dict(op="GATE", beats=config.model.ffn // config.lanes))
        else:
            result.append(fields)
    return result


# -- the model against the simulation -------------------------------------------------------

@dataclass(frozen=True)
class SimulatedCase:
    """One simulated run: the design, its memory, the run, and the controller's counters;
    ``head`` False for a device-head design's program without the head (None: the
    design's own program); ``recorded`` as :func:`estimate_run` takes it; ``steps``, a
    run of that many greedy steps from ``position`` (docs/program.md, "Steps")."""
    name: str
    source: str
    config: AcceleratorConfig
    memory: str
    implementation: str
    position: int
    tokens: int
    counters: dict
    head: bool = None
    recorded: Recorded = Recorded()
    steps: int = 1

    @property
    def phase(self) -> str:
        return "decode" if self.tokens == 1 and self.position > 0 else "prefill"


# Reports recorded before designs could embed on the device ran on host embedding
# (their programs start with a LOAD of the embeddings); newer ones say which they ran.
_RECORDED_EMBEDDING = "host"
# Reports recorded before the HEAD instruction ran with the LM head on the host (their
# programs end with the STORE of the hidden states); newer ones may say which they ran.
_RECORDED_HEAD = "host"
# End-to-end reports recorded before they named the attention lanes ran on designs of 4
# (every preset had 4 then but the ULX3S's, which has no end-to-end report).
_RECORDED_ATTENTION_LANES = 4


def _recorded(report: dict, config: AcceleratorConfig) -> Recorded:
    """What the hardware a report ran did beyond its design's fields: reports recorded
    before they named ``attention_finish_lanes`` ran cores whose results were as wide as
    their beats (``dims_per_cycle``), before they said ``scratch_reader`` was
    ``"full-rate"`` scratchpad readers of 3 beats per 4 cycles, before they said
    ``kv_records`` was ``"packed"``, KV records padded to whole words of the port that
    read them, before they said ``attention_passes`` was ``"overlapped"``, attention
    cores that ran their passes one at a time, before they said ``ffn_gating`` was
    ``"fused"``, programs with a GATE after each ``w_up``, before they said ``norms``
    was ``"fused"``, programs whose NORMs read back a LINEAR's output, and before they
    said ``chunk_loads`` was ``"ahead"``, chunk buffers that loaded a matrix only once
    its LINEAR came (which only a design with a weight queue would do otherwise)."""
    return Recorded(finish_lanes=report.get("attention_finish_lanes",
                                            config.attention.dims_per_cycle),
                    padded_records=report.get("kv_records", "padded") == "padded",
                    reader_rate=(READER_RATE if report.get("scratch_reader") == "full-rate"
                                 else RECORDED_READER_RATE),
                    serial_passes=report.get("attention_passes") != "overlapped",
                    separate_gate=report.get("ffn_gating") != "fused",
                    separate_norms=report.get("norms") != "fused",
                    late_loads=report.get("chunk_loads") != "ahead",
                    single_step=report.get("steps") != "chained")


def _on_ports(config: AcceleratorConfig, recorded: Recorded = Recorded()) -> str:
    """A case name's note of the memory ports a board design read through, its attention
    lanes (lanes x dimensions per cycle), what its hardware did then
    (:func:`_as_recorded`), the port its KV cache was read through (and whether its
    records were padded to that port's words), its weight queue, its instruction blocks
    and an engine wider than its lanes: designs of one name have differed."""
    ports, a = config.memory_ports, config.attention
    kv = ", KV through the weight port" if config.kv_reads == "weights" else ""
    if kv and recorded.padded_records:
        kv += " (padded)"
    queue = f", weight queue {config.weight_queue:,}" if config.weight_queue else ""
    block = f", instructions by {config.fetch_block}" if config.fetch_block > 1 else ""
    rows = (f", engine of {config.tlmm.rows} rows on {config.lanes} lanes"
            if config.beats_per_block > 1 else "")
    return (f" on {ports} port{'s' if ports > 1 else ''}, attention "
            f"{a.lanes}x{a.dims_per_cycle}{_as_recorded(config, recorded)}{kv}{queue}"
            f"{block}{rows}")


def _as_recorded(config: AcceleratorConfig, recorded: Recorded) -> str:
    """A case name's note of what a recorded report's hardware did that the design's as
    built does not: a program without the STORE of a step's choice, a chunk buffer that
    loaded a matrix only once its LINEAR came, NORMs
    apart from the LINEARs whose output they norm, a GATE apart
    from the LINEAR, attention passes one at a time, a scratchpad reader slower than a
    beat a cycle, attention results narrower or wider than the vectors' lanes."""
    notes = []
    if recorded.single_step and design_steps(config) > 1:
        notes.append("one step")
    if recorded.late_loads and config.weight_queue:
        notes.append("loads late")
    if recorded.separate_norms:
        notes.append("NORM apart")
    if recorded.separate_gate:
        notes.append("GATE apart")
    if recorded.serial_passes:
        notes.append("passes one at a time")
    if recorded.reader_rate != READER_RATE:
        notes.append(f"reader {recorded.reader_rate}")
    if recorded.finish_lanes not in (None, config.attention.io_lanes):
        notes.append(f"results by {recorded.finish_lanes}")
    return "".join(f", {note}" for note in notes)


def _e2e_cases(report: dict, source: str) -> list:
    """The runs of a ``bench/e2e.py --json`` report (the reports recorded before designs
    could read through several memory ports ran on one, those recorded before the
    TLMM could have a weight port of its own read through the units' port, and those
    that do not name their attention lanes had 4; those that record their ``design``
    are read as it), its closing run with the device's head (``device_head``) if it has
    one, and its run of greedy steps (``device_steps``) if it has one."""
    if "design" in report:
        design = AcceleratorConfig.from_json(json.dumps(report["design"]))
    else:   # recorded before the attention lanes' width, RoPE's table, the KV cache's
        # port, the weight queue and the instruction blocks could be set, and while the
        # engine's rows were the lanes
        preset = ACCELERATOR_PRESETS[report["config"]]
        design = dataclasses.replace(preset, tlmm=dataclasses.replace(preset.tlmm,
                                                                      rows=preset.lanes),
                                     vector_lanes=None, attention_dims=None, rope_table="rom",
                                     kv_reads="units", weight_queue=0, fetch_block=1)
    config = dataclasses.replace(design,
                                 embedding=report.get("embedding", _RECORDED_EMBEDDING),
                                 head=report.get("head", _RECORDED_HEAD),
                                 memory_ports=report.get("memory_ports", 1),
                                 weight_port_words=report.get("weight_port_words", 1),
                                 attention_lanes=report.get("attention_lanes",
                                                            _RECORDED_ATTENTION_LANES))
    memory = report.get("memory_model", "onchip")
    onchip = memory not in MEMORY_MODELS        # "onchip (in the top)": the top's own memory
    cases = []
    recorded = _recorded(report, config)
    for index, run in enumerate(report["runs"]):
        cases.append(SimulatedCase(
            name=f"{config.name} e2e run {index} ({run['kind']})"
                 + (_as_recorded(config, recorded) if onchip else _on_ports(config, recorded)),
            source=source,
            config=config, memory="onchip" if onchip else memory,
            implementation="onchip" if onchip else "board", position=run["position"],
            tokens=run["tokens"], counters=run["counters"], recorded=recorded))
    # The closing runs with the device's head: one decode step, and a run of steps.
    head_run, steps_run = report.get("device_head"), report.get("device_steps")
    closing = [(head_run, "decode with HEAD", 1)] if head_run and "counters" in head_run else []
    if steps_run:
        closing.append((steps_run, f"{steps_run['steps']} greedy steps", steps_run["steps"]))
    for run, what, steps in closing:
        cases.append(SimulatedCase(
            name=f"{design.name} e2e run {len(cases)} ({what}, {design.head_format})"
                 + (_as_recorded(design, recorded) if onchip else _on_ports(design, recorded)),
            source=source, config=design, memory="onchip" if onchip else memory,
            implementation="onchip" if onchip else "board", position=run["position"],
            tokens=1, counters=run["counters"], recorded=recorded, steps=steps))
    return cases


def _layer_cases(report: dict, source: str) -> list:
    """The cases of ``docs/bench-layer-kv260.json`` (``bench/layer.py --json``)."""
    config = AcceleratorConfig.from_json(json.dumps(
        {"embedding": _RECORDED_EMBEDDING, "head": _RECORDED_HEAD, **report["config"]}))
    if report.get("ports", 1) != config.memory_ports:
        raise ValueError(f"{source}: the report ran on {report['ports']} memory ports, its "
                         f"design reads through {config.memory_ports}")
    recorded = _recorded(report, config)
    return [SimulatedCase(name=f"{config.name} {case['name']}{_on_ports(config, recorded)}",
                          source=source, config=config,
                          memory=report["memory_model"], implementation="board",
                          position=case["position"], tokens=case["tokens"],
                          counters=case["counters"], recorded=recorded)
            for case in report["cases"]]


def _relative(path) -> str:
    """A path as the repository names it (docs/...) when it is inside the checkout."""
    from pathlib import Path
    path = Path(path).resolve()
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def report_cases(report, source: str = None) -> list:
    """:class:`SimulatedCase` of a ``bench/e2e.py --json`` report (``runs``) or a
    ``bench/layer.py --json`` report (``cases``), a dict or the path of its JSON."""
    if not isinstance(report, dict):
        source = source or _relative(report)
        with open(report) as file:
            report = json.load(file)
    if "runs" in report:
        return _e2e_cases(report, source or "bench/e2e.py (this run)")
    if "cases" in report:
        return _layer_cases(report, source or "bench/layer.py (this run)")
    raise ValueError(f"{source}: neither a bench/e2e.py nor a bench/layer.py report")


def simulated_cases(e2e=None, layer=None) -> list:
    """:class:`SimulatedCase` of a ``bench/e2e.py --json`` report and of a
    ``bench/layer.py --json`` report (dicts, or paths to their JSON), either may be None."""
    return [case for report in (e2e, layer) if report is not None
            for case in report_cases(report)]


#: The simulated whole runs kept in docs/ (written by bench/e2e.py and bench/layer.py).
RECORDED_REPORTS = ("bench-e2e-tiny.json", "bench-e2e-kv260.json", "bench-layer-kv260.json",
                    "bench-e2e-kv260-int4.json",
                    "bench-e2e-kv260-r8.json", "bench-layer-kv260-r8.json",
                    "bench-e2e-kv260-int4-r8.json", "bench-layer-kv260-2b-r8.json",
                    "bench-e2e-kv260-pad.json", "bench-layer-kv260-pad.json",
                    "bench-e2e-kv260-int4-pad.json", "bench-layer-kv260-2b-pad.json",
                    "bench-e2e-kv260-a16.json", "bench-layer-kv260-a16.json",
                    "bench-e2e-kv260-int4-a16.json", "bench-layer-kv260-2b-a16.json",
                    "bench-e2e-kv260-nq.json", "bench-layer-kv260-nq.json",
                    "bench-e2e-kv260-int4-nq.json", "bench-layer-kv260-2b-nq.json",
                    "bench-e2e-kv260-kvu.json", "bench-layer-kv260-kvu.json",
                    "bench-e2e-kv260-int4-kvu.json",
                    "bench-e2e-kv260-2l.json", "bench-layer-kv260-2l.json",
                    "bench-e2e-kv260-int4-2l.json",
                    "bench-e2e-kv260-2p.json", "bench-layer-kv260-2p.json",
                    "bench-e2e-kv260-hp0.json", "bench-layer-kv260-hp0.json",
                    "bench-layer-kv260-2b.json", "bench-layer-kv260-2b-2l.json",
                    "bench-layer-kv260-2b-2p.json",
                    "bench-e2e-kv260-reader34.json", "bench-layer-kv260-reader34.json",
                    "bench-e2e-kv260-int4-reader34.json", "bench-layer-kv260-2b-reader34.json",
                    "bench-e2e-kv260-serial.json", "bench-layer-kv260-serial.json",
                    "bench-e2e-kv260-int4-serial.json", "bench-layer-kv260-2b-serial.json",
                    "bench-e2e-tiny-gate.json", "bench-e2e-kv260-gate.json",
                    "bench-layer-kv260-gate.json", "bench-e2e-kv260-int4-gate.json",
                    "bench-layer-kv260-2b-gate.json",
                    "bench-e2e-tiny-norm.json", "bench-e2e-kv260-norm.json",
                    "bench-layer-kv260-norm.json", "bench-e2e-kv260-int4-norm.json",
                    "bench-layer-kv260-2b-norm.json",
                    "bench-e2e-kv260-late.json", "bench-layer-kv260-late.json",
                    "bench-e2e-kv260-int4-late.json", "bench-layer-kv260-2b-late.json",
                    "bench-e2e-tiny-onestep.json", "bench-e2e-kv260-onestep.json",
                    "bench-e2e-kv260-int4-onestep.json")


def recorded_cases(directory=None, names=RECORDED_REPORTS) -> list:
    """The cases of the reports ``names`` in ``directory`` (default: this checkout's docs/)
    that exist and read; the others are skipped."""
    from pathlib import Path
    directory = Path(directory) if directory else Path(__file__).resolve().parent.parent / "docs"
    cases = []
    for name in names:
        path = directory / name
        try:
            cases += report_cases(path) if path.is_file() else []
        except (OSError, ValueError, KeyError):
            continue
    return cases


def compare_run(case: SimulatedCase) -> dict:
    """The model next to one simulated case: total and per kind, simulated, model and the
    relative error (model / simulated - 1), and the memory words per kind. A run of
    several steps is modelled as its steps one after another."""
    steps = [estimate_run(case.config, case.memory, case.position + step, case.tokens,
                          implementation=case.implementation, head=case.head,
                          recorded=case.recorded).counters() for step in range(case.steps)]
    model = {name: sum(counters[name] for counters in steps) for name in steps[0]}
    # A counter a report predates (``head_cycles`` before the HEAD instruction) counted
    # nothing in that run: its design had no such unit.
    sim = {f"{kind}_cycles": 0 for kind in KINDS} | dict(case.counters)

    def entry(name):
        simulated, derived = sim[name], model.get(name, 0)
        return {"simulated": simulated, "model": derived,
                "error": (derived / simulated - 1) if simulated else (0.0 if not derived else None)}

    return {"name": case.name, "source": case.source, "config": case.config.name,
            "memory_model": case.memory, "phase": case.phase, "position": case.position,
            "tokens": case.tokens,
            "cycles": entry("cycles"),
            "kinds": {kind: entry(f"{kind}_cycles") for kind in KINDS},
            "words": {kind: entry(f"{kind}_words") for kind in WORD_KINDS
                      if f"{kind}_words" in sim}}


def agreement(cases) -> dict:
    """:func:`compare_run` of every case and the largest errors."""
    rows = [compare_run(case) for case in cases]
    worst = max((abs(row["cycles"]["error"]) for row in rows), default=0.0)
    return {"cases": rows, "max_abs_error": worst,
            "max_abs_kind_error": {kind: max((abs(row["kinds"][kind]["error"] or 0)
                                              for row in rows), default=0.0) for kind in KINDS}}


# -- the host ------------------------------------------------------------------------------

# Bytes the host streams per head weight and logit row: the integer head's int8 codes
# held as float32 once per model, so its products are exact float BLAS calls
# (docs/numerics.md, section 10; sim/golden/head.py).
HEAD_BYTES_PER_WEIGHT = 4


@dataclass(frozen=True)
class HostModel:
    """The host around the accelerator and the link between them.

    Per run the host writes the run's inputs (token ids, or with host embedding the
    embeddings it looked up) to the io region, runs it with stop-and-wait frames (SET
    ``position`` and ``tokens``, RUN between two reads of the ``runs`` counter, GET
    ``cycles``: ``host/link.py``) and reads the result back. With the LM head on the host
    (``config.head == "host"``) that is the final hidden states, and the final norm and
    the integer LM head then run on the host for the logit rows asked for (one per
    prompt and per decode step in greedy generation: ``Accelerator.prefill(ids,
    logits="last")``); with the head on the device (the HEAD instruction) greedy
    generation reads one word, the top-k's first entry, and runs no head on the host.
    Every figure here is an assumption, named in ``notes``:

    ``stream_bytes_per_second``: NumPy streaming through memory on the host (the head's
    products and the io copies are bound by memory traffic, not arithmetic);
    ``write_byte_seconds`` / ``read_byte_seconds``: one link byte to / from the device;
    ``frame_seconds``: each stop-and-wait frame's turnaround besides its bytes;
    ``bulk_through_memory``: the io region goes through a shared memory buffer (the
    Zynq's DDR: a copy and a cache flush or invalidate) instead of WRITE and READ frames;
    ``memory_bytes``: the host's memory, when it may not hold the host's arrays.
    """
    name: str
    link: str
    stream_bytes_per_second: float
    write_byte_seconds: float
    read_byte_seconds: float
    frame_seconds: float
    notes: tuple = ()
    memory_bytes: int = None
    bulk_through_memory: bool = False


HOSTS = {
    "kv260": HostModel(
        name="the KV260's Cortex-A53 (one core, Linux, CPython and NumPy)",
        link=("the zynq transport: small frames one byte per 32-bit AXI-Lite access to the "
              "link window, the io region through the DDR buffer"),
        stream_bytes_per_second=2.0e9,
        write_byte_seconds=1.3e-6, read_byte_seconds=1.9e-6, frame_seconds=0.2e-3,
        memory_bytes=4 * 2 ** 30, bulk_through_memory=True,
        notes=(
            "memory 4 GiB: the KV260's DDR4, shared by Linux, the host's arrays and the "
            "accelerator's buffer",
            "stream 2.0 GB/s: assumed for one Cortex-A53 core at 1.33 GHz on the PS DDR4; "
            "this development machine (AMD EPYC, 2 cores) streams 8.5 GB/s, and its "
            "integer head takes 24 ms per logit row at BitNet-0.7B's shape (197 MB of "
            "float32 codes: bench/head_fidelity.py, docs/numerics.md section 10)",
            "link bytes 1.3 us out, 1.9 us in: the transport's per-byte Python loop measured "
            "0.15 / 0.20 us on this machine, scaled by 8 (assumed: CPython on the A53 "
            "against this core), plus an AXI-Lite access of 0.1 us (posted write) / 0.3 us "
            "(read) (assumed); the io region's copy and cache maintenance at the stream "
            "rate (bench/zynq_host.py measured 0.01 ms per decode token here)",
            "frame 0.2 ms: assumed for the host's framing, CRC and FIFO polling (50 us "
            "sleeps) per stop-and-wait frame")),
    "ulx3s-85f": HostModel(
        name="a PC over USB (like this development machine)",
        link="the FT231X UART at 3 Mbaud, 8N1, stop and wait",
        stream_bytes_per_second=8.5e9,
        write_byte_seconds=10 / 3e6, read_byte_seconds=10 / 3e6, frame_seconds=1e-3,
        notes=(
            "stream 8.5 GB/s: measured on this development machine for the head's "
            "products (the tiny model's head is 32 K weights, so it hardly matters)",
            "link bytes 3.33 us: 10 bits per byte at 3 Mbaud (derived from the line rate)",
            "frame 1 ms: assumed, the FT231X's latency timer set to 1 ms as docs/boards.md "
            "says; at the Linux default of 16 ms each of a run's frames waits 16 ms")),
}


def link_traffic(config: AcceleratorConfig, tokens: int,
                 bulk_through_memory: bool = False, read_words: int = None,
                 program_sets: int = 0) -> dict:
    """Bytes and frames one run moves over the host link (``Accelerator._run_io`` and
    ``LinkClient.run``): WRITE the inputs (a word per token id with device embedding,
    else the embeddings), ``program_sets`` SETs of the ``program`` register (a
    device-head design switches to its program without the head for a prompt's earlier
    runs and back for its last), RUN carrying its tag, ``position`` and ``tokens`` (its
    reply the status, the run counter and the cycles; the client reads ``run_tag``
    before its first RUN only, not counted here), READ what the host reads back:
    ``read_words`` bus words, by default the
    run's final hidden states (``tokens * hidden / lanes`` words) with the LM head on
    the host (``config.head == "host"``) and the whole top-k (``head_k`` words at the
    compiler's ``top_address``) with the head on the device. Greedy decoding with a
    device head reads 1 word, the argmax (the top-k's first entry), and nothing after
    a prefill run that does not end the prompt: ``read_words`` 1 or 0. Frames as
    ``host/link.py`` encodes them (SLIP escapes of the data not counted: a fraction of a
    percent for random data). With ``bulk_through_memory`` the inputs and what the host
    reads go through the shared buffer instead of WRITE and READ (``memory_bytes``).
    ``read_bytes`` is what the host reads, ``payload`` that and the inputs."""
    from tritium.hw.link import protocol as p
    from .link import encode_frame
    word_bytes = config.data_width // 8
    data = tokens * config.model.hidden * 4
    inputs = tokens * word_bytes if config.embedding == "device" else data
    if read_words is None:
        read_words = data // word_bytes if config.head == "host" else config.head_k
    if read_words < 0:
        raise ValueError(f"read_words must be at least 0, not {read_words}")
    read_bytes = read_words * word_bytes
    chunk = (config.max_payload - 4) // word_bytes * word_bytes
    per_frame = config.max_payload // word_bytes

    def request(kind, payload):            # host -> device: END, frame, END
        return len(encode_frame(kind, 0, bytes(payload)))

    def reply(payload):                    # device -> host: frame, END
        return len(encode_frame(0x80, 0, bytes(payload))) - 1

    to_device = from_device = frames = 0
    if not bulk_through_memory:
        for start in range(0, inputs, chunk):
            to_device += request(p.WRITE, 4 + min(chunk, inputs - start))
            from_device += reply(0)
            frames += 1
    exchanges = [(p.SET, 5, 0)] * program_sets + [(p.RUN, p.RUN_SET_BYTES, p.RUN_REPLY_BYTES)]
    for kind, payload, answer in exchanges:
        to_device += request(kind, payload)
        from_device += reply(answer)
        frames += 1
    if not bulk_through_memory:
        for start in range(0, read_words, per_frame):
            to_device += request(p.READ, 6)
            from_device += reply(min(per_frame, read_words - start) * word_bytes)
            frames += 1
    return {"to_device": to_device, "from_device": from_device, "frames": frames,
            "payload": inputs + read_bytes, "read_bytes": read_bytes,
            "memory_bytes": inputs + read_bytes if bulk_through_memory else 0}


def host_run_seconds(model: ModelConfig, config: AcceleratorConfig, host: HostModel,
                     tokens: int, head_rows: int = 0, program_sets: int = 0) -> dict:
    """Host seconds around one run of ``tokens`` tokens that ends in ``head_rows``
    tokens' logits or choices (greedy generation: 1 for the run that ends the prompt and
    for each decode step, else 0): ``embed`` (rows to float64 and back to int32; none
    with device embedding), ``lm_head`` (with the head on the host, the integer head for
    ``head_rows`` logit rows: :data:`HEAD_BYTES_PER_WEIGHT` bytes streamed per weight and
    row; none with the head on the device, whose HEAD is fabric time) and ``link``
    (:func:`link_traffic`: its bytes and frames, and the io region's copy through a
    shared buffer at the streaming rate; with the head on the device the host reads
    ``head_rows`` words, the argmax, instead of the hidden states)."""
    weights = model.vocab_size * model.hidden
    device_head = config.head == "device"
    link = link_traffic(config, tokens, host.bulk_through_memory,
                        read_words=head_rows if device_head else None,
                        program_sets=program_sets)
    return {
        "embed": (tokens * model.hidden * 20 / host.stream_bytes_per_second
                  if config.embedding == "host" else 0.0),
        "lm_head": (0.0 if device_head else
                    head_rows * HEAD_BYTES_PER_WEIGHT * weights / host.stream_bytes_per_second),
        "link": (link["to_device"] * host.write_byte_seconds
                 + link["from_device"] * host.read_byte_seconds
                 + link["frames"] * host.frame_seconds
                 + link["memory_bytes"] / host.stream_bytes_per_second),
        "link_bytes": link["to_device"] + link["from_device"],
        "memory_bytes": link["memory_bytes"]}


# -- designs for models ----------------------------------------------------------------------

def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _memory_need(config: AcceleratorConfig) -> int:
    """Words of memory ``config``'s model needs: weights, gains, io, program, KV cache."""
    return memory_plan(config).words + config.kv_words


def derive_config(base: AcceleratorConfig, model: ModelConfig, name: str = None,
                  memory_words: int = None) -> AcceleratorConfig:
    """``base``'s units (lanes, the TLMM tile and token tile, table storage, attention
    lanes, clock, link frame) resized to ``model``: TLMM ``max_k``/``max_n`` (and the
    accumulator width) to the model's widest linears, the KV cache to its layers, heads
    and context, the attention core's dimensions per cycle to the widest multiple of the
    lanes, no wider than ``base``'s, that divides the model's heads, and ``memory_words``
    (default: the next power of two that holds the weights, gains, io, program and KV
    cache). ``ValueError`` if the units cannot serve the model's shape (its dimensions
    must be whole beats of the lanes)."""
    tlmm = base.tlmm
    widest = max(model.hidden, model.q_dim, model.ffn)
    max_k = _round_up(widest, tlmm.k_per_word)
    resized = dataclasses.replace(
        tlmm, max_k=max_k, max_n=_round_up(max(widest, model.kv_dim), tlmm.rows),
        acc_width=max(tlmm.acc_width, TLMMConfig(group=tlmm.group, tables=tlmm.tables,
                                                 rows=tlmm.rows, max_k=max_k,
                                                 max_n=tlmm.rows,
                                                 acc_width=64).min_acc_width))
    name = name or f"{base.name}-{model.name}"
    dims = base.attention_dims
    if dims is not None:
        dims = next((d for d in range(dims, 0, -base.lanes) if model.head_dim % d == 0), dims)
    trial = dataclasses.replace(base, name=name, model=model, tlmm=resized,
                                attention_dims=dims, memory_words=2 ** 32)
    if memory_words is None:
        memory_words = 1 << (_memory_need(trial) - 1).bit_length()
    return dataclasses.replace(trial, memory_words=memory_words)


def fit_problems(model: ModelConfig, config: AcceleratorConfig) -> list:
    """What of ``model`` design ``config`` cannot hold, each with the amount: the shape
    it was built for, the TLMM buffers, the KV cache, the memory. Empty if it fits."""
    problems = []
    for name in ("hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "activation",
                 "rope_pairing", "rope_theta"):
        want, have = getattr(model, name), getattr(config.model, name)
        if want != have:
            problems.append(f"{name} {want} (built for {have})")
    try:
        need = derive_config(config, model)
    except ValueError as error:
        return problems + [str(error)]
    for name, label in (("max_k", "TLMM max_k"), ("max_n", "TLMM max_n")):
        want, have = getattr(need.tlmm, name), getattr(config.tlmm, name)
        if want > have:
            problems.append(f"{label} {have} < {want} ({want - have} short)")
    if model.max_context > config.model.max_context:
        problems.append(f"context {model.max_context} tokens (the KV cache holds "
                        f"{config.model.max_context})")
    word_bytes = config.data_width // 8
    if need.kv_words > config.kv_words:
        problems.append(f"KV cache {need.kv_words:,} words ({_mb(need.kv_words * word_bytes)}), "
                        f"the design holds {config.kv_words:,} "
                        f"({need.kv_words - config.kv_words:,} short)")
    words = _memory_need(need)
    if words > config.memory_words:
        problems.append(f"memory {words:,} words ({_mb(words * word_bytes)}), the design has "
                        f"{config.memory_words:,} ({words - config.memory_words:,} short)")
    return problems


def _mb(count: float) -> str:
    return f"{count / 1e6:,.1f} MB"


@dataclass(frozen=True)
class BoardSetup:
    """A model on a board: the design (``config``, ``config_kind`` ``"preset"``,
    ``"given"`` or ``"derived"``), its memory model, the host, and ``notes`` on how it
    was chosen."""
    board: object
    config: AcceleratorConfig
    config_kind: str
    memory: MemoryModel
    host: HostModel
    notes: tuple = ()


def board_setup(model: ModelConfig, board, config: AcceleratorConfig = None) -> BoardSetup:
    """The design that runs ``model`` on ``board`` (a :class:`~tritium.boards.Board`):
    ``config`` if given (``ValueError`` naming what it cannot hold), else the board's
    preset if it holds the model, else the first of the board's other presets that
    does, else the preset's units resized to the model (:func:`derive_config`) if the
    board's memory holds them, else ``ValueError``."""
    memory = MEMORY_MODELS[board.memory]
    host = HOSTS[board.name]
    if config is not None:
        problems = fit_problems(model, config)
        if problems:
            raise ValueError(f"model {model.name!r} does not fit accelerator {config.name!r}: "
                             + "; ".join(problems))
        return BoardSetup(board, config, "given", memory, host)
    preset = ACCELERATOR_PRESETS[board.config]
    problems = fit_problems(model, preset)
    if not problems:
        return BoardSetup(board, preset, "preset", memory, host)
    for other in board.presets:
        if not fit_problems(model, ACCELERATOR_PRESETS[other]):
            return BoardSetup(board, ACCELERATOR_PRESETS[other], "board preset", memory, host)
    try:
        derived = derive_config(preset, model)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} does not fit board {board.name}'s preset "
                         f"{preset.name!r} ({'; '.join(problems)}), and its units cannot be "
                         f"resized to it: {error}") from None
    word_bytes = derived.data_width // 8
    limit = board.memory_bytes or preset.memory_words * word_bytes
    need = _memory_need(derived) * word_bytes
    if need > limit:
        raise ValueError(f"model {model.name!r} does not fit board {board.name}: its weights, "
                         f"gains, program and KV cache need {_mb(need)} of memory, the board "
                         f"holds {_mb(limit)} ({_mb(need - limit)} short)")
    note = (f"derived: the {preset.name} preset's units resized to {model.name} (TLMM max_k "
            f"{derived.tlmm.max_k}, max_n {derived.tlmm.max_n}, memory {derived.memory_words:,} "
            f"words, KV cache {derived.model.max_context} tokens); never generated or "
            f"synthesized: its fit on the board's FPGA is unchecked. The preset itself: "
            + "; ".join(problems))
    return BoardSetup(board, derived, "derived", memory, host, (note,))


# -- projections -----------------------------------------------------------------------------

#: The parts of a token's time (docs/performance.md), the counter kinds of the fabric's;
#: ``head`` (the HEAD instruction) only for a design with the LM head on the device.
PARTS = (("linears", ("linear",)), ("attention", ("attend",)),
         ("element-wise", ("norm", "gate")), ("control", ("fetch", "move")),
         ("head", ("head",)))


def _parts_of(config: AcceleratorConfig) -> tuple:
    """The fabric parts of ``config``'s time: :data:`PARTS`, without ``head`` for a design
    whose LM head is on the host (it has no HEAD)."""
    return tuple((name, kinds) for name, kinds in PARTS
                 if name != "head" or config.head == "device")


DEFAULT_CONTEXTS = (64, 512, 1024, 2048)
DEFAULT_PROMPTS = (64, 128)


def _rooflines(setup: BoardSetup, config: AcceleratorConfig, moved: int) -> dict:
    """Seconds the memory needs for ``moved`` bytes at the sustained rate of the ports
    the design uses and of all the board's ports."""
    word_bytes = config.data_width // 8
    result = {}
    for key, ports in (("ports_used", config.memory_ports), ("all_ports", len(setup.memory.ports))):
        rate = setup.memory.sustained_bytes_per_cycle(ports, config.clock_hz, word_bytes)
        result[key] = {"ports": ports, "bytes_per_second": float(rate * config.clock_hz),
                       "seconds": float(moved / (rate * config.clock_hz)), "label": "derived"}
    return result


def _runs_figures(setup: BoardSetup, model: ModelConfig, runs, steps: int = 1) -> dict:
    """The time of a sequence of runs ``(position, tokens)`` that ends in one token's
    logits (a host head) or choice (a device head: its argmax): fabric parts (derived;
    with a device head the HEAD of the last run only), the host's LM head and embedding and the
    link (assumed), and the rooflines. With ``steps`` > 1, ``runs`` is one decode step of a
    run of that many (docs/program.md, "Steps"): the host's work and the link, once a
    run for all its steps' choices, count a ``steps``-th."""
    config = setup.config
    kinds = {kind: 0.0 for kind in KINDS}
    moved = link_bytes = buffer_bytes = 0
    host = {"embed": 0.0, "lm_head": 0.0, "link": 0.0}
    device_head = config.head == "device"
    for index, (position, tokens) in enumerate(runs):
        last = index == len(runs) - 1
        # A device-head design runs the head only in the last run (the one whose argmax
        # is used): the earlier runs of a prompt take the program without it, which
        # costs a SET of ``program`` when the prompt starts and one before its last run.
        sets = int(device_head and len(runs) > 1 and (index == 0 or last))
        run = estimate_run(config, setup.memory, position, tokens,
                           head=last if device_head else None)
        for kind in KINDS:
            kinds[kind] += run.by_kind[kind] / config.clock_hz
        moved += run.bytes_moved
        # Greedy generation asks for one logit row (a device head: one argmax word): the
        # last run's last token's.
        seconds = host_run_seconds(model, config, setup.host, tokens,
                                   head_rows=int(last) * steps, program_sets=sets)
        for key in host:
            host[key] += seconds[key] / steps
        link_bytes += seconds["link_bytes"] / steps
        buffer_bytes += seconds["memory_bytes"] / steps
    fabric_parts = _parts_of(config)
    parts = {name: {"seconds": sum(kinds[k] for k in members), "label": "derived"}
             for name, members in fabric_parts}
    parts["lm_head"] = {"seconds": host["lm_head"] + host["embed"], "label": "assumed"}
    parts["link"] = {"seconds": host["link"], "label": "assumed", "bytes": link_bytes,
                     "memory_bytes": buffer_bytes}
    fabric = sum(parts[name]["seconds"] for name, _ in fabric_parts)
    total = sum(part["seconds"] for part in parts.values())
    return {"seconds": total, "fabric_seconds": fabric, "host_seconds": total - fabric,
            "parts": parts, "memory_bytes": moved, "runs": len(runs),
            "roofline": _rooflines(setup, config, moved)}


def decode_steps(config: AcceleratorConfig, steps: int = None) -> int:
    """``steps``, the greedy decode steps a run of ``config`` makes (None: the design's
    most, ``isa.design_steps``); ValueError unless 1 .. that most."""
    most = design_steps(config)
    steps = most if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= most:
        if most == 1:
            raise ValueError(f"accelerator {config.name!r} makes one decode step a run (it "
                             f"chooses its own tokens only with the embedding and the LM "
                             f"head on the device), not {steps!r}")
        raise ValueError(f"accelerator {config.name!r} makes 1 .. {most} decode steps a "
                         f"run, not {steps!r}")
    return steps


def project(setup: BoardSetup, model: ModelConfig, contexts=None, prompts=DEFAULT_PROMPTS,
            simulated=(), steps: int = None) -> dict:
    """``model`` on ``setup``'s design and board, as one JSON-able dict:

    - ``decode``: per context ``c`` (a decode step at position ``c - 1``): seconds per
      token split into :data:`PARTS` (``head``, the HEAD instruction, only with the LM
      head on the device), the host's LM head (with the embedding; 0 with both on the
      device) and the link, ``host_seconds`` (the host's share), tokens per second with
      the host and for the fabric alone, and the rooflines; greedy decoding in runs of
      ``steps`` steps (default the design's most, ``isa.design_steps``: 64 on a design
      that chooses its own tokens, else 1), the host's share once a run;
    - ``ttft``: per prompt length, the prefill in runs of ``max_tokens`` (each with its
      host work and link; with a device head each run's program ends with HEAD) until
      the first token's logits or, with a device head, its argmax;
    - ``head``: where the LM head runs and what the host reads per decode token;
    - ``simulated``: for each :class:`SimulatedCase` of this design or its one-layer
      slice (``simulated``; with the LM head where the case ran it), its simulated
      cycles per part next to the model's.
    Labels: ``derived`` (the analytic model), ``assumed`` (the host, :data:`HOSTS`).
    """
    config = setup.config
    capacity = config.attention.capacity
    if contexts is None:
        contexts = [c for c in DEFAULT_CONTEXTS if c <= capacity] or [capacity]
    for context in list(contexts) + list(prompts):
        if not 1 <= context <= min(capacity, model.max_context):
            raise ValueError(f"context {context} is beyond model {model.name!r}'s maximum of "
                             f"{min(capacity, model.max_context)} tokens")
    steps = decode_steps(config, steps)
    decode = []
    for context in contexts:
        figures = _runs_figures(setup, model, [(context - 1, 1)], steps)
        figures.update(context=context, steps=steps, tokens_per_s=1 / figures["seconds"],
                       fabric_tokens_per_s=1 / figures["fabric_seconds"])
        decode.append(figures)
    ttft = []
    step = config.max_tokens
    for prompt in prompts:
        runs = [(start, min(step, prompt - start)) for start in range(0, prompt, step)]
        figures = _runs_figures(setup, model, runs)
        figures.update(prompt=prompt)
        ttft.append(figures)
    notes = list(setup.notes)
    device_head = config.head == "device"
    word_bytes = config.data_width // 8
    if steps > 1:
        notes.append(f"greedy decoding runs {steps} steps a run, each step's input the step "
                     f"before's choice (docs/program.md, \"Steps\"): the host's frames and "
                     f"reads come once a run, a {steps}th of them per token")
    if device_head:
        weights = (f"{config.head_format} weights, a scale per {config.head_group} dims"
                   if config.head_format == "int4" else "int8 weights")
        notes.append(f"the LM head runs on the device (HEAD, {weights}, top {config.head_k}; "
                     f"its time "
                     f"is the fabric's \"{_PART_NAMES['head']}\"): greedy decoding runs no "
                     f"LM head on the host (0 ms per token) and reads {word_bytes} bytes per "
                     f"token, the argmax's word, instead of the hidden states")
    if setup.host.memory_bytes and not device_head:
        # The float32 embedding and head (one array if tied), the integer head's float32
        # codes, and the accelerator's buffer in the same memory.
        weights = model.vocab_size * model.hidden
        need = ((1 if model.tied_embedding else 2) * 4 + HEAD_BYTES_PER_WEIGHT) * weights \
            + config.memory_words * word_bytes
        if need > setup.host.memory_bytes:
            notes.append(f"the host's arrays (embedding, head and its integer codes: "
                         f"{_mb(need - config.memory_words * word_bytes)}) and "
                         f"the accelerator's buffer ({_mb(config.memory_words * word_bytes)}) "
                         f"need {_mb(need)}, more than the host's {_mb(setup.host.memory_bytes)}: "
                         f"the LM head on the host cannot run there")
    return {
        "model": model.name, "board": setup.board.name, "config": config.name,
        "config_kind": setup.config_kind, "notes": notes,
        "design": json.loads(config.to_json()),
        "memory_model": setup.memory.name, "memory_source": setup.memory.source,
        "ports_used": config.memory_ports, "clock_hz": config.clock_hz,
        "host": {"name": setup.host.name, "link": setup.host.link,
                 "stream_bytes_per_second": setup.host.stream_bytes_per_second,
                 "write_byte_seconds": setup.host.write_byte_seconds,
                 "read_byte_seconds": setup.host.read_byte_seconds,
                 "frame_seconds": setup.host.frame_seconds,
                 "bulk_through_memory": setup.host.bulk_through_memory,
                 "notes": list(setup.host.notes), "label": "assumed"},
        "labels": LABELS,
        "head": {"where": config.head, "k": config.head_k if device_head else None,
                 "host_read_bytes_per_decode_token": (
                     word_bytes if device_head else model.hidden * 4),
                 "label": "derived"},
        "decode": decode, "ttft": ttft,
        "simulated": _simulated_checks(config, simulated),
    }


def _ran_design(case_config: AcceleratorConfig, config: AcceleratorConfig) -> bool:
    """Whether ``case_config`` is ``config`` or ``config`` reduced to one layer
    (``bench/layer.py``: its runs start from hidden states, so its embedding is the
    host's), either with the LM head where the case ran it (the reports recorded before
    the HEAD instruction ran a host head: ``_RECORDED_HEAD``)."""
    head = dict(head=case_config.head, head_k=case_config.head_k)
    try:
        if case_config.model.layers == config.model.layers:
            return dataclasses.replace(config, **head) == case_config
        if case_config.model.layers != 1:
            return False
        one = dataclasses.replace(config, name=case_config.name,
                                  embedding=case_config.embedding,
                                  model=dataclasses.replace(config.model, layers=1), **head)
    except ValueError:                  # config cannot have the case's head
        return False
    return one == case_config


def _simulated_checks(config: AcceleratorConfig, cases) -> list:
    """The simulations of this design or of its one-layer slice, as its hardware is now
    (not a recorded report of hardware it has since changed: ``case.recorded``): per
    case, the simulated cycles of each part and the model's for the same run."""
    checks = []
    for case in cases:
        if not _ran_design(case.config, config) or not case.recorded.is_current(config):
            continue
        row = compare_run(case)
        checks.append({
            "case": case.name, "source": case.source, "position": case.position,
            "tokens": case.tokens, "layers": case.config.model.layers,
            "head": case.config.head, "cycles": row["cycles"],
            "parts": {name: {"simulated": sum(row["kinds"][k]["simulated"] for k in members),
                             "model": sum(row["kinds"][k]["model"] for k in members)}
                      for name, members in _parts_of(case.config)}})
    return checks


# -- output ----------------------------------------------------------------------------------

_PART_NAMES = {"linears": "linears", "attention": "attention",
               "element-wise": "element-wise (norm, gate)", "control": "control (fetch, move)",
               "head": "LM head (device, HEAD)",
               "lm_head": "LM head + embedding (host)", "link": "host link"}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _weight_port_text(result: dict) -> str:
    """The header's note of a design's weight port (docs/memory.md, "BoardPorts")."""
    design = AcceleratorConfig.from_json(json.dumps(result["design"]))
    if not design.weight_port:
        return ""
    streams = ("the weights, the head and the KV cache's reads"
               if design.kv_reads == "weights" else "the weights and the head")
    return (f"; {streams} through a {design.weight_memory.data_width}-bit "
            f"port on all of them, the other units through {design.units_ports}")


def format_projection(result: dict) -> str:
    """:func:`project`'s result as a readable table."""
    lines = [f"{result['model']} on {result['board']}: accelerator {result['config']!r} "
             f"({_KIND_TEXT[result['config_kind']]}), {result['clock_hz'] / 1e6:g} MHz, "
             f"memory model {result['memory_model']} on {result['ports_used']} "
             f"port{'s' if result['ports_used'] > 1 else ''}"
             + (", striped" if result['ports_used'] > 1 else "") + _weight_port_text(result)]
    lines += [f"  {note}" for note in result["notes"]]
    host = result["host"]
    lines.append(f"host (assumed): {host['name']}; link: {host['link']}")
    decode = result["decode"]

    def table(title, columns, rows):
        width = max(len(name) for name, _, _ in rows) + 2
        out = [f"{title:<{width + 9}}" + "".join(f"{c:>16}" for c in columns)]
        for name, label, values in rows:
            out.append(f"  {name:<{width}}{label:<7}" + "".join(f"{v:>16}" for v in values))
        return out

    def part_rows(items):
        rows = [(_PART_NAMES[name], part["label"], [_ms(i["parts"][name]["seconds"])
                                                   for i in items])
                for name, part in items[0]["parts"].items()]
        rows.append(("total", "", [_ms(i["seconds"]) for i in items]))
        rows.append(("host share (head, embedding, link)", "assumed",
                     [_ms(i["host_seconds"]) for i in items]))
        return rows

    rows = part_rows(decode)
    rows.append(("host link bytes, both ways", "derived",
                 [f"{i['parts']['link']['bytes']:,.1f}" for i in decode]))
    rows.append(("tokens/s", "", [f"{i['tokens_per_s']:,.2f}" for i in decode]))
    rows.append(("tokens/s, fabric alone", "derived",
                 [f"{i['fabric_tokens_per_s']:,.2f}" for i in decode]))
    for key in _roof_keys(decode[0]):
        roof = decode[0]["roofline"][key]
        rows.append((f"memory roofline, {roof['ports']} port{'s' if roof['ports'] > 1 else ''} "
                     f"({roof['bytes_per_second'] / 1e9:.2f} GB/s)", "derived",
                     [f"{_ms(i['roofline'][key]['seconds'])}" for i in decode]))
    title = "decode, per token" + (f" ({decode[0]['steps']} steps a run)"
                                   if decode[0]["steps"] > 1 else "")
    lines += [""] + table(title, [f"context {i['context']}" for i in decode], rows)
    ttft = result["ttft"]
    if ttft:
        rows = part_rows(ttft)
        for key in _roof_keys(ttft[0]):
            roof = ttft[0]["roofline"][key]
            rows.append((f"memory roofline, {roof['ports']} port{'s' if roof['ports'] > 1 else ''}",
                         "derived", [_ms(i["roofline"][key]["seconds"]) for i in ttft]))
        lines += [""] + table("time to first token", [f"{i['prompt']} tokens" for i in ttft], rows)
    for check in result["simulated"]:
        layers = f"{check['layers']} layer{'s' if check['layers'] > 1 else ''}"
        if check.get("head", result["head"]["where"]) != result["head"]["where"]:
            layers += f", LM head on the {check['head']}"
        lines.append(f"simulated check: {check['case']} ({layers}): "
                     f"{check['cycles']['simulated']:,} cycles simulated, "
                     f"{check['cycles']['model']:,} modelled ({check['cycles']['error']:+.2%})")
    lines += ["", "derived: the analytic model (host/performance.py, calibrated against the "
              "cycle-accurate simulation); assumed: host and link figures "
              "(docs/performance.md, \"Host side\")"]
    if result["head"]["where"] == "device":
        lines.append("HEAD: the head's words at the weight port's rate, within 0.02% of the "
                     "simulated BitNet-0.7B head on the kv260 memory model, int8 and int4 "
                     "(docs/performance.md)")
    return "\n".join(lines)


def _roof_keys(item) -> tuple:
    """The rooflines worth a row: all of the board's ports only if the design uses fewer."""
    roof = item["roofline"]
    return (("ports_used", "all_ports") if roof["all_ports"]["ports"] > roof["ports_used"]["ports"]
            else ("ports_used",))


_KIND_TEXT = {"preset": "the board's preset", "board preset": "the board's preset for it",
              "given": "as given",
              "derived": "derived from the board's preset"}


def plot_projection(result: dict, path) -> None:
    """A PNG of the decode time per token, part by part, against the memory rooflines
    (needs matplotlib: the ``plots`` extra)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    decode = result["decode"]
    labels = [str(i["context"]) for i in decode]
    names = list(decode[0]["parts"])
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.5))
    for axis, chosen, title in ((axes[0], names, "per token, host included"),
                                (axes[1], [n for n, _ in PARTS if n in names], "the fabric alone")):
        bottom = [0.0] * len(decode)
        for name in chosen:
            values = [i["parts"][name]["seconds"] * 1e3 for i in decode]
            axis.bar(labels, values, bottom=bottom,
                     label=f"{_PART_NAMES[name]} ({decode[0]['parts'][name]['label']})")
            bottom = [b + v for b, v in zip(bottom, values)]
        for key, style in zip(_roof_keys(decode[0]), ("--", ":")):
            roof = decode[0]["roofline"][key]
            axis.plot(labels, [i["roofline"][key]["seconds"] * 1e3 for i in decode], "k" + style,
                      marker="o", label=f"memory roofline, {roof['ports']} port(s)")
        axis.set_xlabel("context (tokens)")
        axis.set_ylabel("ms per token")
        axis.set_title(title)
        axis.legend(fontsize=7)
    figure.suptitle(f"{result['model']} on {result['board']} ({result['config']}): decode")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    pyplot.close(figure)
