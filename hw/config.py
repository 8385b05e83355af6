"""Plain configuration dataclasses shared by the gateware, the golden model and the host.

This module imports nothing but the standard library and :mod:`.numerics`, so the golden
model (``sim/``) and the host (``host/``) may use it without depending on the gateware.
"""

import dataclasses
import json
import zlib
from dataclasses import dataclass

__all__ = ["kv_record_bits", "kv_record_words", "kv_region_words", "KV_READS", "WEIGHT_QUEUE_MIN",
           "FETCH_BLOCK_MAX", "EMBEDDINGS", "EMBEDDING_BITS", "HEADS", "ModelConfig",
           "HeadConfig",
           "HEAD_FORMATS", "MemoryConfig", "TileConfig", "TLMMConfig", "ElementwiseConfig",
           "AttentionConfig", "AcceleratorConfig", "MODEL_PRESETS", "ACCELERATOR_PRESETS",
           "TLMM_PRESETS", "tlmm_preset"]

from .head_layout import head_layout_of
from .numerics import EXPONENT_BITS, MANTISSA_BITS

ACTIVATIONS = ("silu", "relu2")


def kv_record_bits(head_dim: int) -> int:
    """Bits of one KV cache record (``hw.layouts.kv_record_layout``): ``head_dim`` int8 K
    and V codes and their two scales."""
    return 2 * 8 * head_dim + 2 * (MANTISSA_BITS + EXPONENT_BITS)


def kv_record_words(head_dim: int, data_width: int) -> int:
    """Bus words of ``data_width`` bits one KV record takes in memory: its bits rounded up
    to whole words (the writer's port writes whole words)."""
    return -(-kv_record_bits(head_dim) // data_width)


def kv_region_words(head_dim: int, capacity: int, data_width: int, align: int = 1) -> int:
    """Bus words of one (layer, kv head)'s records: ``capacity`` records back to back,
    rounded up to a multiple of ``align``, so that a port ``align`` bus words wide starts
    every pass over them on a whole word of its own (its records straddle its words:
    docs/attention.md)."""
    words = capacity * kv_record_words(head_dim, data_width)
    return -(-words // align) * align


ROPE_PAIRINGS = ("half", "interleaved")


def _check_positive(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, not {value!r}")


def _check_choice(obj, name: str, choices: tuple) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(f"{type(obj).__name__}.{name} must be one of {choices}, not {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a BitNet b1.58 decoder (LLaMA-shaped, ternary linears).

    ``hidden`` is the residual width; attention uses ``heads`` query heads and
    ``kv_heads`` key/value heads of ``head_dim`` each (``heads * head_dim`` need not
    equal ``hidden``). ``rope_pairing`` is ``"half"`` (dims i and i + head_dim/2 rotate
    together, rotate-half/NeoX) or ``"interleaved"`` (dims 2i and 2i+1, GPT-J/LLaMA GGUF).
    """
    name: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    activation: str = "silu"
    rope_theta: float = 10000.0
    rope_pairing: str = "half"
    norm_eps: float = 1e-5
    max_context: int = 2048
    tied_embedding: bool = False

    def __post_init__(self):
        _check_positive(self, "vocab_size", "hidden", "layers", "heads", "kv_heads",
                        "head_dim", "ffn", "max_context")
        if self.heads % self.kv_heads:
            raise ValueError(f"ModelConfig.heads ({self.heads}) must be a multiple of "
                             f"kv_heads ({self.kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig.head_dim must be even for RoPE, not {self.head_dim}")
        if self.head_dim > 256:
            raise ValueError(f"ModelConfig.head_dim must be at most 256, not {self.head_dim}")
        _check_choice(self, "activation", ACTIVATIONS)
        _check_choice(self, "rope_pairing", ROPE_PAIRINGS)
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (0 < value < float("inf")):
                raise ValueError(f"ModelConfig.{name} must be a positive finite number, "
                                 f"not {value!r}")

    @property
    def kv_group(self) -> int:
        """Query heads per key/value head (1 for plain multi-head attention)."""
        return self.heads // self.kv_heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict:
        """(out_features, in_features) of each ternary linear in one layer."""
        return {
            "wq": (self.q_dim, self.hidden),
            "wk": (self.kv_dim, self.hidden),
            "wv": (self.kv_dim, self.hidden),
            "wo": (self.hidden, self.q_dim),
            "w_gate": (self.ffn, self.hidden),
            "w_up": (self.ffn, self.hidden),
            "w_down": (self.hidden, self.ffn),
        }

    @property
    def ternary_weights_per_layer(self) -> int:
        return sum(n * k for n, k in self.linear_shapes().values())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"ModelConfig has no field(s) {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))


HEAD_FORMATS = ("int8", "int4")
ACT_CODE_PEAK = 128             # |int8 activation code| <= 128 (docs/numerics.md section 1)


@dataclass(frozen=True)
class HeadConfig:
    """The LM head's weight format (docs/numerics.md section 10).

    ``"int8"``: int8 codes, one scale per vocabulary row; ``"int4"``: int4 codes, one
    scale per ``group`` consecutive hidden dims of a row (half the bytes). Every scale
    is a 16-bit mantissa and all of a head's scales share one exponent, so each row's
    score is an exact integer and the argmax over the vocabulary needs no float.
    """
    format: str = "int8"
    group: int = 64             # int4 only: hidden dims per scale

    def __post_init__(self):
        _check_choice(self, "format", HEAD_FORMATS)
        _check_positive(self, "group")

    @property
    def code_max(self) -> int:
        """Largest weight code magnitude: codes are symmetric, -code_max .. code_max."""
        return 127 if self.format == "int8" else 7

    @property
    def acc_bits(self) -> int:
        """Signed width of a row's accumulator: int32 for int8 (then one multiply by the
        row mantissa), 48 bits (a DSP's accumulator) for int4, whose group mantissas are
        multiplied in while accumulating."""
        return 32 if self.format == "int8" else 48

    def max_hidden(self) -> int:
        """The largest hidden size whose worst-case accumulator fits :attr:`acc_bits`
        (activation codes of magnitude 128 against codes of magnitude ``code_max``, and
        for int4 every group mantissa at 2**16 - 1)."""
        per_input = ACT_CODE_PEAK * self.code_max
        if self.format == "int4":
            per_input *= 2 ** MANTISSA_BITS - 1
        return (2 ** (self.acc_bits - 1) - 1) // per_input

    def check(self, hidden: int) -> None:
        """Raise ``ValueError`` unless a head of ``hidden`` inputs has this format."""
        if hidden > self.max_hidden():
            raise ValueError(f"a {self.format} LM head takes at most {self.max_hidden()} "
                             f"inputs (its int{self.acc_bits} accumulator), not {hidden}")
        if self.format == "int4" and hidden % self.group:
            raise ValueError(f"an int4 LM head's group ({self.group}) must divide the "
                             f"hidden size ({hidden})")

    def weight_bytes(self, vocab: int, hidden: int) -> int:
        """Bytes of the head as the hardware stores it: codes plus 16-bit mantissas."""
        if self.format == "int8":
            return vocab * hidden + 2 * vocab
        return vocab * hidden // 2 + 2 * vocab * (hidden // self.group)


@dataclass(frozen=True)
class TileConfig:
    """The TLMM engine's tile, which fixes the packed weight layout.

    ``group`` activations share one lookup table (G), ``tables`` tables are looked up
    per cycle (T) for each of ``rows`` output rows (R). One weight word holds the
    ``rows * tables`` codes the engine consumes per cycle; a code encodes ``group``
    ternary weights in ``code_bits`` bits (5 bits for G = 3, 4 bits for G = 2).
    """
    group: int = 3
    tables: int = 4
    rows: int = 8

    def __post_init__(self):
        if self.group not in (2, 3):
            raise ValueError(f"TileConfig.group must be 2 or 3, not {self.group!r}")
        _check_positive(self, "tables", "rows")

    @property
    def code_bits(self) -> int:
        return (3 ** self.group - 1).bit_length()

    @property
    def k_per_word(self) -> int:
        """Input features (columns) covered by one weight word."""
        return self.group * self.tables

    @property
    def word_bits(self) -> int:
        return self.rows * self.tables * self.code_bits

    def padded_shape(self, out_features: int, in_features: int) -> tuple:
        """The matrix shape after padding rows to R and columns to G*T."""
        return (-(-out_features // self.rows) * self.rows,
                -(-in_features // self.k_per_word) * self.k_per_word)


@dataclass(frozen=True)
class MemoryConfig:
    """Geometry of a memory port.

    ``data_width`` bits per bus word (a multiple of 8), ``addr_width`` bits of word
    address, and up to ``2**len_width - 1`` words per command.
    """
    data_width: int = 64
    addr_width: int = 24
    len_width: int = 16

    def __post_init__(self):
        for name in ("data_width", "addr_width", "len_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MemoryConfig.{name} must be a positive integer, not {value!r}")
        if self.data_width % 8:
            raise ValueError(f"MemoryConfig.data_width must be a multiple of 8, "
                             f"not {self.data_width}")

    @property
    def bytes_per_word(self) -> int:
        return self.data_width // 8

    def widened(self, ratio: int) -> "MemoryConfig":
        """The geometry of a port over the same memory whose words are ``ratio`` (a power
        of two) of these words side by side, the lowest-addressed in the low bits: word
        ``a`` of the wide port is words ``ratio * a`` .. ``ratio * a + ratio - 1`` here, so
        its addresses and command lengths are ``log2(ratio)`` bits narrower."""
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 1 \
                or ratio & (ratio - 1):
            raise ValueError(f"a widening ratio must be a power of two, not {ratio!r}")
        shift = ratio.bit_length() - 1
        if shift >= min(self.addr_width, self.len_width):
            raise ValueError(f"a port of {self.addr_width} address and {self.len_width} "
                             f"length bits cannot be widened {ratio} times")
        return MemoryConfig(data_width=self.data_width * ratio,
                            addr_width=self.addr_width - shift, len_width=self.len_width - shift)


TABLE_MODES = ("full", "half")
TABLE_STORAGES = ("registers", "lutram")


@dataclass(frozen=True)
class TLMMConfig:
    """The ternary table-lookup matmul engine and its weight buffer.

    ``group``, ``tables`` and ``rows`` are the tile (G, T, R; see :class:`TileConfig`).
    ``table_mode`` is ``"full"`` (3**G entries per table) or ``"half"`` (the
    (3**G + 1) / 2 entries of codes from the all-zero pattern up; the rest are their
    negations). ``tokens`` is the prefill tile P: every weight word fetched from memory
    serves up to P tokens. ``max_k`` and ``max_n`` are the largest input and output
    features a job may have (they size counters, accumulators and buffers);
    ``max_k`` must be a multiple of G*T, i.e. already padded. ``acc_width`` is the
    signed accumulator width. ``table_storage`` is where the tables live:
    ``"registers"`` (a table set built in one cycle, looked up through multiplexers) or
    ``"lutram"`` (distributed RAM, one entry of every table written per cycle, one read
    port per row: the large tiles' choice, docs/tlmm.md).
    """
    group: int = 3
    tables: int = 4
    rows: int = 4
    table_mode: str = "full"
    tokens: int = 1
    max_k: int = 1536
    max_n: int = 1536
    acc_width: int = 24
    table_storage: str = "registers"

    def __post_init__(self):
        TileConfig(self.group, self.tables, self.rows)            # validates the tile
        _check_positive(self, "tokens", "max_k", "max_n", "acc_width")
        _check_choice(self, "table_mode", TABLE_MODES)
        _check_choice(self, "table_storage", TABLE_STORAGES)
        if self.max_k % self.k_per_word:
            raise ValueError(f"TLMMConfig.max_k ({self.max_k}) must be a multiple of "
                             f"group * tables ({self.k_per_word}): pad K to the tile")
        if self.max_n % self.rows:
            raise ValueError(f"TLMMConfig.max_n ({self.max_n}) must be a multiple of "
                             f"rows ({self.rows}): pad N to the tile")
        if self.acc_width < self.min_acc_width:
            raise ValueError(f"TLMMConfig.acc_width ({self.acc_width}) is too narrow for "
                             f"max_k = {self.max_k}: needs at least {self.min_acc_width} bits")

    @property
    def tile(self) -> TileConfig:
        return TileConfig(self.group, self.tables, self.rows)

    @property
    def k_per_word(self) -> int:
        return self.group * self.tables

    def job_shape(self, out_features: int, in_features: int, tokens: int) -> dict:
        """The engine job for an N x K matrix and ``tokens`` tokens, checked against the
        buffers: the accumulators hold ``tokens * max_n`` sums, the ping-pong weight
        buffer one K-chunk of ``max_n / R`` words per bank. Raises ``ValueError`` naming
        what does not fit."""
        rows, cols = self.tile.padded_shape(out_features, in_features)
        if min(out_features, in_features, tokens) < 1:
            raise ValueError(f"a matmul job needs positive sizes, not N={out_features}, "
                             f"K={in_features}, tokens={tokens}")
        if rows > self.max_n:
            raise ValueError(f"N = {out_features} (padded {rows}) exceeds the buffers' "
                             f"max_n = {self.max_n}")
        if cols > self.max_k:
            raise ValueError(f"K = {in_features} (padded {cols}) exceeds max_k = {self.max_k}")
        if tokens > self.tokens:
            raise ValueError(f"{tokens} tokens exceed the engine's token tile of {self.tokens}")
        return {"chunks": cols // self.k_per_word, "row_blocks": rows // self.rows,
                "tokens": tokens}

    @property
    def entries(self) -> int:
        """Entries per lookup table."""
        full = 3 ** self.group
        return full if self.table_mode == "full" else (full + 1) // 2

    @property
    def entry_width(self) -> int:
        """Signed width of a table entry: sums of G products of int8 and {-1, 0, 1}.

        The extremes are +-128*G (-128 times -1 is +128), so +128*G must fit.
        """
        return (128 * self.group).bit_length() + 1

    @property
    def min_acc_width(self) -> int:
        """Signed width that holds the largest |sum| of max_k products, 128 * max_k."""
        return (128 * self.max_k).bit_length() + 1

    @property
    def max_chunks(self) -> int:
        return self.max_k // self.k_per_word

    @property
    def max_row_blocks(self) -> int:
        return self.max_n // self.rows

    @property
    def macs_per_cycle(self) -> int:
        return self.group * self.tables * self.rows

    def __str__(self):
        storage = "l" if self.table_storage == "lutram" else ""
        return (f"g{self.group}t{self.tables}r{self.rows}{self.table_mode[0]}{storage}"
                f"p{self.tokens}k{self.max_k}n{self.max_n}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TLMMConfig":
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ElementwiseConfig:
    """The element-wise unit behind the linears.

    ``lanes`` vector elements travel per beat; ``max_features`` is the longest vector a
    norm buffers (the largest of hidden, heads * head_dim and ffn of the models served).
    """
    lanes: int = 1
    max_features: int = 1536

    def __post_init__(self):
        _check_positive(self, "lanes", "max_features")
        if self.max_features % self.lanes:
            raise ValueError(f"ElementwiseConfig.max_features ({self.max_features}) must be "
                             f"a multiple of lanes ({self.lanes})")

    def check_features(self, features: int) -> None:
        """Raise ``ValueError`` unless a vector of ``features`` elements fits the unit."""
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"a vector needs a positive length, not {features!r}")
        if features % self.lanes:
            raise ValueError(f"a vector of {features} elements is not a whole number of "
                             f"beats of {self.lanes} lanes")
        if features > self.max_features:
            raise ValueError(f"a vector of {features} elements exceeds the element-wise "
                             f"unit's max_features = {self.max_features}")


@dataclass(frozen=True)
class AttentionConfig:
    """The attention unit and its KV cache.

    The unit serves models with exactly ``heads`` query heads and ``kv_heads`` key/value
    heads of ``head_dim`` each, for ``layers`` layers and contexts of up to ``capacity``
    tokens (the KV cache holds that many per layer and kv head). ``lanes`` (query,
    head) pairs that share a kv head are served in parallel from one pass over the
    cache; each lane handles ``dims_per_cycle`` dimensions of a key per cycle.
    ``io_lanes`` (default ``dims_per_cycle``, of which it is a divisor) is the width of
    the vectors the unit takes and returns, the accelerator's lanes, and of the core's
    results: a core wider than them takes a key in fewer cycles without widening
    anything else, its outputs (once per block, not per key) leaving ``io_lanes`` at a
    time.
    """
    head_dim: int = 32
    heads: int = 4
    kv_heads: int = 2
    layers: int = 1
    capacity: int = 256
    lanes: int = 4
    dims_per_cycle: int = 8
    io_lanes: int = None

    def __post_init__(self):
        if self.io_lanes is None:
            object.__setattr__(self, "io_lanes", self.dims_per_cycle)
        _check_positive(self, "head_dim", "heads", "kv_heads", "layers", "capacity", "lanes",
                        "dims_per_cycle", "io_lanes")
        if self.dims_per_cycle % self.io_lanes:
            raise ValueError(f"AttentionConfig.dims_per_cycle ({self.dims_per_cycle}) must be "
                             f"a multiple of io_lanes ({self.io_lanes})")
        if self.heads % self.kv_heads:
            raise ValueError(f"AttentionConfig.heads ({self.heads}) must be a multiple of "
                             f"kv_heads ({self.kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"AttentionConfig.head_dim must be even for RoPE, "
                             f"not {self.head_dim}")
        if self.head_dim % self.dims_per_cycle:
            raise ValueError(f"AttentionConfig.dims_per_cycle ({self.dims_per_cycle}) must "
                             f"divide head_dim ({self.head_dim})")
        if self.head_dim > 256:
            raise ValueError(f"AttentionConfig.head_dim must be at most 256, not {self.head_dim}")
        if self.capacity > 2 ** 16:
            raise ValueError(f"AttentionConfig.capacity must be at most 65536 (the softmax "
                             f"accumulator bound of docs/numerics.md), not {self.capacity}")

    @classmethod
    def for_model(cls, model: ModelConfig, **overrides) -> "AttentionConfig":
        """The attention shape of ``model`` (capacity: its max_context), with overrides."""
        fields = dict(head_dim=model.head_dim, heads=model.heads, kv_heads=model.kv_heads,
                      layers=model.layers, capacity=model.max_context)
        return cls(**{**fields, **overrides})

    @property
    def kv_group(self) -> int:
        return self.heads // self.kv_heads

    @property
    def beats_per_key(self) -> int:
        """The core's beats of one key (and of one lane's output)."""
        return self.head_dim // self.dims_per_cycle

    @property
    def io_per_beat(self) -> int:
        """Vector beats (``io_lanes`` elements) in one of the core's beats."""
        return self.dims_per_cycle // self.io_lanes

    @property
    def io_beats_per_head(self) -> int:
        """Vector beats of one head's input or output (``io_lanes`` elements each)."""
        return self.head_dim // self.io_lanes

    def check_model(self, model: ModelConfig) -> None:
        """Raise ``ValueError`` naming the first head shape of ``model`` this unit cannot serve."""
        for name in ("head_dim", "heads", "kv_heads"):
            want, have = getattr(model, name), getattr(self, name)
            if want != have:
                raise ValueError(f"model {model.name!r} has {name} = {want}, but the attention "
                                 f"unit is built for {name} = {have}")
        if model.layers > self.layers:
            raise ValueError(f"model {model.name!r} has {model.layers} layers, but the KV "
                             f"cache holds {self.layers}")

    def check_span(self, start: int, tokens: int) -> None:
        """Raise ``ValueError`` unless tokens ``start .. start + tokens - 1`` fit the cache."""
        if not isinstance(tokens, int) or tokens < 1:
            raise ValueError(f"an attention step needs at least one token, not {tokens!r}")
        if not isinstance(start, int) or start < 0:
            raise ValueError(f"a sequence position must be a non-negative integer, "
                             f"not {start!r}")
        if start + tokens > self.capacity:
            raise ValueError(f"context of {start + tokens} tokens exceeds the KV cache "
                             f"capacity of {self.capacity}")


MODEL_PRESETS = {
    # TeLLMe's model (1bitLLM/bitnet_b1_58-large config.json).
    "bitnet-b1.58-large": ModelConfig(
        name="bitnet-b1.58-large", vocab_size=32002, hidden=1536, layers=24, heads=16,
        kv_heads=16, head_dim=96, ffn=4096, activation="silu", rope_theta=10000.0,
        rope_pairing="half", norm_eps=1e-5, max_context=2048, tied_embedding=False),
    # microsoft/bitnet-b1.58-2B-4T config.json: GQA 20/5 heads of 128, ReLU^2, tied head.
    "bitnet-b1.58-2b-4t": ModelConfig(
        name="bitnet-b1.58-2b-4t", vocab_size=128256, hidden=2560, layers=30, heads=20,
        kv_heads=5, head_dim=128, ffn=6912, activation="relu2", rope_theta=500000.0,
        rope_pairing="half", norm_eps=1e-5, max_context=4096, tied_embedding=True),
    # The shipped demo model: byte-level, small enough to sit in ECP5-85F block RAM.
    "tiny": ModelConfig(
        name="tiny", vocab_size=256, hidden=128, layers=4, heads=4, kv_heads=2,
        head_dim=32, ffn=384, activation="silu", rope_theta=10000.0,
        rope_pairing="half", norm_eps=1e-5, max_context=256, tied_embedding=False),
}


# Where a design looks up token embeddings (AcceleratorConfig.embedding), and the widths
# of the device table's values (AcceleratorConfig.embedding_bits).
EMBEDDINGS = ("device", "host")
EMBEDDING_BITS = (16, 32)
HEADS = ("device", "host")
# Where RoPE's cos/sin table lives (AcceleratorConfig.rope_table).
ROPE_TABLES = ("rom", "memory")
#: Which port the attention unit reads the KV cache through (AcceleratorConfig.kv_reads).
KV_READS = ("units", "weights")
#: The smallest weight queue (AcceleratorConfig.weight_queue): four of the prefetcher's
#: 32-word bursts, the three it keeps in flight and one the TLMM takes.
WEIGHT_QUEUE_MIN = 128
#: The most instructions the controller reads at once (AcceleratorConfig.fetch_block).
FETCH_BLOCK_MAX = 64


def rope_row_pairs(model: ModelConfig, lanes: int) -> int:
    """The (cos, sin) pairs in a row of RoPE's table, one beat of ``lanes`` elements'
    worth: ``lanes`` with the half pairing (each lane is one pair's element), ``lanes / 2``
    with the interleaved (two lanes are one pair; docs/numerics.md section 5)."""
    return lanes if model.rope_pairing == "half" else max(lanes // 2, 1)


def rope_rows(model: ModelConfig, lanes: int) -> int:
    """Rows of RoPE's table per position, :func:`rope_row_pairs` pairs each."""
    return model.head_dim // 2 // rope_row_pairs(model, lanes)


@dataclass(frozen=True)
class AcceleratorConfig:
    """The whole accelerator: the model shape it serves and the size of every unit.

    One design runs any weights of ``model``'s shape, any prompt length and any number
    of decode steps up to ``model.max_context`` (the KV cache's capacity). A run
    processes 1 .. ``max_tokens`` tokens (a prompt chunk or one decode step); it must
    equal the TLMM engine's token tile so every linear is one engine job. Vectors move
    between the units in beats of ``lanes`` int32 elements, which is also, at 32 bits
    each, the memory's bus word (``data_width`` bits, ``memory_words`` words):
    ``vector_lanes`` if given, else the TLMM engine's ``tlmm.rows``. An engine whose rows
    are a multiple of the lanes hands each result beat on in ``rows / lanes`` beats, so a
    wider engine does not widen the element-wise units, the attention's vectors or the
    bus (docs/accelerator.md, "Lanes and rows"). The attention unit has
    ``attention_lanes`` lanes of ``attention_dims`` dimensions per cycle each (a
    multiple of ``lanes``, default ``lanes``: a wider core takes a key in fewer cycles;
    docs/attention.md). ``max_payload`` is the host
    link's frame buffer in bytes; ``clock_hz`` the clock the design is built for.
    ``memory_ports`` is how many ports of a board's external memory the design reads
    through: its one memory port striped across them (``hw/memory/stripe.py``; the
    ``kv260`` board top gets an AXI4 master per port). A design whose memory is on chip
    has one. ``weight_port_words`` (a power of two dividing ``memory_ports``) gives the
    two bulk streams, the TLMM's weights and the device head's rows, a port of their
    own, that many bus words wide (:attr:`weight_memory`), striped across all the board
    ports, while the units' port takes the first :attr:`units_ports` of them
    (``hw/memory/fabric.py``): the 256-bit bus takes one word per cycle, 8 GB/s at
    250 MHz, which two HP ports already fill; a 512-bit weight port lets those streams
    use four. 1 (the default) keeps them on the units' port.
    ``embedding`` says where the token embedding is looked up: ``"device"`` (the table
    sits in the accelerator's memory and the host sends token ids; the EMBED
    instruction) or ``"host"`` (the host sends each token's embedding vector: for a
    board whose memory cannot hold the table, the ULX3S). ``embedding_bits`` is the width
    of the device table's values: 16 (Q3.12, the residual format's values in [-8, 8),
    which the lookup sign-extends exactly; half the bytes of 32) or 32 (the residual
    format itself, for a model whose embedding leaves that range). ``head`` says where
    the final norm and the LM head run: ``"device"`` (the HEAD instruction scores
    every vocabulary row on the head unit and returns the ``head_k`` best, so the host
    reads a token id, not a hidden state; docs/head.md) or ``"host"`` (the host reads the
    final hidden states and applies the head: for a board whose memory cannot hold the
    head, the ULX3S). ``head_format`` is the head's weights wherever it runs: ``"int8"``
    (the default: a scale per row) or ``"int4"`` (half the bytes, a scale per
    ``head_group`` hidden dims, less faithful: docs/numerics.md section 10).
    ``rope_table`` is where RoPE's cos/sin table lives: ``"rom"`` (the default: block RAM
    holding every position) or ``"memory"`` (:attr:`rope_words` words at
    :attr:`rope_base`, just below the KV cache, written with the model; the attention
    unit reads each job's positions into a window of its own: docs/attention.md), for a
    context whose table would fill the chip's block RAM.
    ``weight_queue`` (0, the default, or a power of two of at least
    :data:`WEIGHT_QUEUE_MIN`) is how many weight-port words the design reads ahead of the
    TLMM: with it, a LINEAR's weights are read by the PREFETCH instruction the compiler
    puts one matrix ahead of it, into a queue of that many words, so the weight port keeps
    streaming while the instructions between two LINEARs (NORM, ATTEND) execute and
    while a LINEAR's tail drains; it needs a weight port (docs/accelerator.md,
    "Weight queue").
    ``fetch_block`` (1, the default, or a power of two up to :data:`FETCH_BLOCK_MAX`) is
    how many instructions the controller reads from memory at once: with more than one
    it keeps them in a queue and reads again only when that is empty, so most
    instructions start without waiting for the memory's latency (docs/program.md).
    ``kv_reads`` is the port the attention unit reads the KV cache through: ``"units"``
    (the default: the units' port, like every other unit) or ``"weights"`` (the weight
    port, which idles during ATTEND, so a pass reads the records at the rate of all the
    board ports; each (layer, kv head)'s records then start on a weight-port word,
    :attr:`kv_port_words`, and straddle its words; the records are still written
    through the units' port: docs/attention.md).
    """
    name: str
    model: ModelConfig
    tlmm: TLMMConfig
    attention_lanes: int = 4
    attention_dims: int = None
    vector_lanes: int = None
    memory_words: int = 2 ** 14
    memory_ports: int = 1
    weight_port_words: int = 1
    clock_hz: int = 100_000_000
    max_payload: int = 1024
    embedding: str = "device"
    embedding_bits: int = 16
    head: str = "device"
    head_k: int = 4
    head_format: str = "int8"
    head_group: int = 64
    rope_table: str = "rom"
    kv_reads: str = "units"
    weight_queue: int = 0
    fetch_block: int = 1

    def __post_init__(self):
        _check_positive(self, "attention_lanes", "memory_words", "memory_ports", "clock_hz",
                        "max_payload", "head_k", "weight_port_words", "head_group")
        ratio = self.weight_port_words
        if ratio & (ratio - 1) or ratio > self.memory_ports or self.memory_ports % ratio:
            raise ValueError(f"weight_port_words must be a power of two that divides "
                             f"memory_ports ({self.memory_ports}), not {ratio}: a weight port "
                             f"wider than the ports it is striped across brings nothing")
        _check_choice(self, "embedding", EMBEDDINGS)
        _check_choice(self, "embedding_bits", EMBEDDING_BITS)
        _check_choice(self, "head", HEADS)
        _check_choice(self, "rope_table", ROPE_TABLES)
        _check_choice(self, "kv_reads", KV_READS)
        if self.kv_reads == "weights" and not self.weight_port:
            raise ValueError("kv_reads = 'weights' reads the KV cache through the weight port: "
                             "it needs one (weight_port_words > 1)")
        queue = self.weight_queue
        if not isinstance(queue, int) or isinstance(queue, bool) or queue and (
                queue < WEIGHT_QUEUE_MIN or queue & (queue - 1)):
            raise ValueError(f"weight_queue must be 0 or a power of two of at least "
                             f"{WEIGHT_QUEUE_MIN} words, not {queue!r}")
        block = self.fetch_block
        if not isinstance(block, int) or isinstance(block, bool) or not (
                1 <= block <= FETCH_BLOCK_MAX) or block & (block - 1):
            raise ValueError(f"fetch_block must be a power of two from 1 to {FETCH_BLOCK_MAX} "
                             f"instructions, not {block!r}")
        if queue and not self.weight_port:
            raise ValueError("weight_queue reads the weights ahead through the weight port: "
                             "it needs one (weight_port_words > 1)")
        if self.memory_words % self.kv_port_words:
            raise ValueError(f"memory_words ({self.memory_words}) must be a multiple of "
                             f"weight_port_words ({self.kv_port_words}) when the KV cache, at "
                             f"the top of memory, is read through the weight port")
        lanes = self.vector_lanes
        if lanes is not None and (not isinstance(lanes, int) or isinstance(lanes, bool)
                                  or lanes < 1 or self.tlmm.rows % lanes):
            raise ValueError(f"vector_lanes must be a positive divisor of the TLMM engine's "
                             f"{self.tlmm.rows} rows, not {lanes!r}: each result beat leaves "
                             f"in whole beats of the lanes")
        model, lanes = self.model, self.lanes
        for name in ("hidden", "ffn", "q_dim", "kv_dim", "head_dim"):
            value = getattr(model, name)
            if value % lanes:
                raise ValueError(f"model {model.name!r} has {name} = {value}, not a multiple "
                                 f"of the accelerator's {lanes} lanes")
        if (model.head_dim // 2) % lanes:
            raise ValueError(f"model {model.name!r}: head_dim / 2 = {model.head_dim // 2} is "
                             f"not a multiple of the {lanes} lanes RoPE pairs per beat")
        if self.tlmm.k_per_word % lanes:
            raise ValueError(f"the TLMM engine's {self.tlmm.k_per_word} activations per "
                             f"chunk must be whole beats of {lanes} lanes")
        widest = max(model.hidden, model.q_dim, model.ffn)
        if self.tlmm.max_k < widest or self.tlmm.max_n < max(widest, model.kv_dim):
            raise ValueError(f"the TLMM engine (max_k {self.tlmm.max_k}, max_n "
                             f"{self.tlmm.max_n}) cannot hold model {model.name!r}'s "
                             f"{widest}-wide linears")
        if self.memory_words > 2 ** 32:
            raise ValueError(f"memory_words must be at most 2**32, not {self.memory_words}")
        if self.embedding == "device" and self.embedding_bits == 16 \
                and model.hidden % (2 * lanes):
            raise ValueError(f"a 16-bit embedding table packs two beats per memory word: "
                             f"model {model.name!r}'s hidden = {model.hidden} must be a "
                             f"multiple of {2 * lanes}")
        self.head_weights.check(model.hidden)           # validates the head's format too
        if self.head == "device":
            self._check_device_head()
        self.attention                                  # validates the attention shape
        if self.kv_words + self.rope_words >= self.memory_words:
            table = f" and the RoPE table ({self.rope_words})" if self.rope_words else ""
            raise ValueError(f"the KV cache ({self.kv_words} words){table} do not fit in "
                             f"{self.memory_words} words of memory")

    def _check_device_head(self):
        model = self.model
        if self.lanes < 3:
            raise ValueError(f"a device head writes each top-k entry as one beat of 3 lanes "
                             f"(row, score low, score high); accelerator {self.name!r} has "
                             f"{self.lanes}: use head = \"host\"")
        if self.head_k > model.vocab_size:
            raise ValueError(f"head_k = {self.head_k} exceeds model {model.name!r}'s "
                             f"vocabulary of {model.vocab_size}")
        if self.head_k > self.max_tokens * model.q_dim // self.lanes:
            raise ValueError(f"head_k = {self.head_k} top-k entries do not fit the "
                             f"scratchpad's QKV region")
        head_layout_of(self)                            # the format tiles the port's words

    def with_head_format(self, head_format: str) -> "AcceleratorConfig":
        """This design with its LM head in ``head_format``, named ``<name>-<format>``
        (``ValueError`` if the head cannot take it); itself if the format is its own."""
        if head_format == self.head_format:
            return self
        return dataclasses.replace(self, name=f"{self.name}-{head_format}",
                                   head_format=head_format)

    @property
    def head_weights(self) -> HeadConfig:
        """The LM head's weight format (``head_format``, and ``head_group`` for int4),
        on the device's head unit or on the host (docs/numerics.md section 10)."""
        return HeadConfig(self.head_format, self.head_group)

    @property
    def lanes(self) -> int:
        """Elements of a vector beat: ``vector_lanes``, or the engine's rows."""
        return self.vector_lanes or self.tlmm.rows

    @property
    def beats_per_block(self) -> int:
        """Vector beats of one TLMM result beat (one row block of ``tlmm.rows``)."""
        return self.tlmm.rows // self.lanes

    @property
    def max_tokens(self) -> int:
        return self.tlmm.tokens

    @property
    def data_width(self) -> int:
        return 32 * self.lanes

    @property
    def embedding_row_words(self) -> int:
        """Memory words of one row of the device's embedding table."""
        return self.model.hidden * self.embedding_bits // self.data_width

    @property
    def id_bits(self) -> int:
        """Bits of a token id that EMBED uses (the id modulo ``2 ** id_bits``): enough
        for every id of the design's vocabulary."""
        return max(1, (self.model.vocab_size - 1).bit_length())

    @property
    def addr_width(self) -> int:
        return max(1, (self.memory_words - 1).bit_length())

    @property
    def attention(self) -> AttentionConfig:
        return AttentionConfig.for_model(self.model, lanes=self.attention_lanes,
                                         dims_per_cycle=self.attention_dims or self.lanes,
                                         io_lanes=self.lanes)

    @property
    def elementwise(self) -> ElementwiseConfig:
        m = self.model
        return ElementwiseConfig(lanes=self.lanes, max_features=max(m.hidden, m.q_dim, m.ffn))

    @property
    def memory(self) -> "MemoryConfig":
        """The memory port's :class:`MemoryConfig`."""
        return MemoryConfig(data_width=self.data_width, addr_width=self.addr_width,
                            len_width=12)

    @property
    def weight_port(self) -> bool:
        """Whether the TLMM and the head stream through a port of their own
        (``weight_port_words`` > 1) rather than the units' port."""
        return self.weight_port_words > 1

    @property
    def units_ports(self) -> int:
        """Board ports the units' port reads through: all ``memory_ports``, or with a
        weight port ``memory_ports / weight_port_words`` of them (the first), as a bus
        word per cycle needs that share of what a weight-port word per cycle does; the
        weight port reads through them all."""
        return self.memory_ports // self.weight_port_words

    @property
    def weight_memory(self) -> "MemoryConfig":
        """The weight port (the TLMM's weights, the device head's rows): :attr:`memory`
        ``weight_port_words`` words wide (:meth:`MemoryConfig.widened`); the units' port
        itself when that is 1."""
        return self.memory.widened(self.weight_port_words)

    @property
    def scratch_words(self) -> int:
        """Scratchpad beats: per token x, the QKV row, the attention output and the FFN's
        gate (the gated output overwrites it; up never reaches the scratchpad)."""
        m = self.model
        per_token = m.hidden + m.q_dim + 2 * m.kv_dim + m.q_dim + m.ffn
        return self.max_tokens * per_token // self.lanes

    @property
    def kv_port_words(self) -> int:
        """Bus words per word of the port that reads the KV cache: ``weight_port_words``
        with ``kv_reads = "weights"``, else 1; each (layer, kv head)'s records start on a
        word of it."""
        return self.weight_port_words if self.kv_reads == "weights" else 1

    @property
    def kv_words(self) -> int:
        """Bus words of the KV cache (``KVLayout.words``: records of int8 K and V codes
        and two 26-bit scales in whole bus words, each (layer, kv head)'s on a word of the
        port that reads them)."""
        a = self.attention
        return a.layers * a.kv_heads * kv_region_words(a.head_dim, a.capacity,
                                                       self.data_width, self.kv_port_words)

    @property
    def kv_base(self) -> int:
        """The KV cache fills the top of memory."""
        return self.memory_words - self.kv_words

    @property
    def rope_rows(self) -> int:
        """Rows of RoPE's cos/sin table per position (:func:`rope_row_pairs` pairs each);
        with ``rope_table = "memory"`` each row is one bus word."""
        return rope_rows(self.model, self.lanes)

    @property
    def rope_words(self) -> int:
        """Bus words of RoPE's table in memory (``rope_table = "memory"``), else 0."""
        return self.model.max_context * self.rope_rows if self.rope_table == "memory" else 0

    @property
    def rope_base(self) -> int:
        """RoPE's table in memory sits just below the KV cache (``kv_base`` without one)."""
        return self.kv_base - self.rope_words

    @property
    def rope_memory_base(self):
        """The attention unit's ``rope_base``: where it reads RoPE's table, None for a ROM."""
        return self.rope_base if self.rope_table == "memory" else None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AcceleratorConfig":
        """Inverse of :meth:`to_json`; ``ValueError`` names what is missing or wrong."""
        try:
            fields = json.loads(text)
            fields["model"] = ModelConfig(**fields["model"])
            fields["tlmm"] = TLMMConfig(**fields["tlmm"])
            return cls(**fields)
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"not an accelerator config: {error}") from None

    @property
    def design_id(self) -> int:
        """CRC-32 of the configuration: what INFO and the ``design`` register report."""
        return zlib.crc32(self.to_json().encode())

    def check_model(self, model: ModelConfig) -> None:
        """Raise ``ValueError`` naming the first field of ``model`` this design cannot run."""
        for name in ("hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "activation",
                     "rope_pairing", "rope_theta"):
            want, have = getattr(model, name), getattr(self.model, name)
            if want != have:
                raise ValueError(f"model {model.name!r} has {name} = {want!r}, but accelerator "
                                 f"{self.name!r} is built for {name} = {have!r}")
        if self.head == "device" and model.vocab_size != self.model.vocab_size:
            raise ValueError(f"model {model.name!r} has a vocabulary of {model.vocab_size} "
                             f"tokens; accelerator {self.name!r}'s head scores exactly "
                             f"{self.model.vocab_size} rows")
        if self.embedding == "device" and model.vocab_size > self.model.vocab_size:
            raise ValueError(f"model {model.name!r} has a vocabulary of {model.vocab_size} "
                             f"tokens; accelerator {self.name!r} looks up embeddings of at "
                             f"most {self.model.vocab_size} ids")
        if model.max_context > self.model.max_context:
            raise ValueError(f"model {model.name!r} has a context of {model.max_context} "
                             f"tokens; accelerator {self.name!r}'s KV cache holds "
                             f"{self.model.max_context}")


ACCELERATOR_PRESETS = {
    # The demo design: the tiny model, everything on chip, 8 lanes.
    "tiny": AcceleratorConfig(
        name="tiny", model=MODEL_PRESETS["tiny"],
        tlmm=TLMMConfig(group=3, tables=8, rows=8, table_mode="full", tokens=8,
                        max_k=384, max_n=384, acc_width=18),
        attention_lanes=4, memory_words=2 ** 14, clock_hz=50_000_000, max_payload=1024),
    # The tiny model with its whole context on the ULX3S-85F (docs/boards.md). At 8 lanes
    # (the tiny preset) the design needs about 119k LUT4 and 373 multipliers, and its
    # 256-bit words waste a quarter of the KV cache's records; the ECP5-85F has 84k LUT4,
    # 156 multipliers and 208 DP16KD. At 2 lanes the weights (23,452 words of 64 bits)
    # and a 256-token KV cache (18,432 words, 2% padding) take 168 DP16KD as 21 slices
    # of 2048 x 9 blocks, so memory_words is the 43,008 words those hold; with a token
    # tile of 1 the rest of the design takes the other 40 (a tile of 2 would need 44).
    # The UART's 3 Mbaud (about 3.4 ms per token of embeddings in and hidden states
    # out) is far slower than 2 lanes compute, so the narrow design costs no speed.
    # The tables are in LUT RAM (docs/tlmm.md): out of context on ECP5 the engine takes
    # 2,167 LUTs, 192 DPR16X4 and 690 flip-flops, against 9,604 LUTs and 5,096 flip-flops
    # with register tables, and a table set's 29 cycles of writing hide behind the
    # shortest sweep (64 outputs of k and v at R = 2: 32 look-ups).
    # Clock: 45 MHz from the PLL (25 MHz * 9 / 5), 15 cycles per bit at 3 Mbaud exactly.
    # The whole design routes at 45.79 to 50.05 MHz for it as the netlist changes
    # (nextpnr, issue 16: enable-free pipelines, LUT-RAM tables and rings, the static
    # placer with seed 2; docs/boards.md), 2 to 11% in hand; 50 MHz (divisor 17) would
    # not hold and would miss the baud rate by 2%.
    "ulx3s": AcceleratorConfig(
        name="ulx3s", model=MODEL_PRESETS["tiny"],
        tlmm=TLMMConfig(group=3, tables=8, rows=2, table_mode="full", tokens=1,
                        max_k=384, max_n=384, acc_width=18, table_storage="lutram"),
        attention_lanes=2, memory_words=43_008, clock_hz=45_000_000, max_payload=1024,
        # The table (128 KB) and the head (67 KB) do not fit beside the weights and the
        # KV cache, and a 2-lane beat cannot hold a top-k entry.
        embedding="host", head="host"),
    # BitNet-0.7B on the KV260 (docs/boards.md): T = 32 (TeLLMe's 28, raised so a K-chunk
    # of 96 divides 1536; docs/resources.md) with the tables in LUT-RAM, as TeLLMe keeps
    # them, at R = 16 rows (1,536 MACs per cycle: a token's 0.68 G MACs of prefill in
    # 1.8 ms, where R = 8 took 3.5 and bounded the time to first token) behind vectors
    # of 8 lanes (vector_lanes): the element-wise units, the attention's vectors and the
    # 256-bit bus keep the width of R = 8, and each result beat leaves in two
    # (docs/accelerator.md, "Lanes and rows"). One 128-bit HP port at 250 MHz moves
    # 4 GB/s, so the ~141 MB of packed weights take 35 ms per decode token (10.6 ms on
    # all four ports) and 4.4 ms per prompt token at a tile of 8 (1.3 ms on four). The
    # yosys estimate of R = 16 with 16 lanes and 8 attention lanes was 220% of the
    # XCK26's LUTs (docs/boards.md).
    # 2**24 words of 256 bits (512 MiB) hold the weights and a 2048-token KV cache.
    # All four HP ports (HP0..HP3), 13.33 GB/s together (docs/performance.md). The units'
    # 256-bit port takes a word per cycle (8 GB/s at 250 MHz), which two ports already
    # fill (a decode layer took 1.91 times fewer cycles on two than on one); the two bulk
    # streams, the weights and the head, most of a decode token's bytes, have a 512-bit
    # port of their own (weight_port_words = 2), striped across the four ports beside the
    # units' (a decode layer at context 64: 1.58 times fewer cycles than on two ports).
    # One attention lane of 24 dimensions behind the 8-lane vectors: BitNet-0.7B's 16 KV
    # heads serve one query head each, so decode used one of several 8-dimension lanes
    # (each about 8,000 of the XCK26's LUTs); one lane three times as wide takes a key
    # of 96 dimensions in 4 cycles instead of 12, under the 4.2 its record takes to
    # arrive (below), so a pass runs at the memory's rate (docs/attention.md). Its
    # results leave 8 at a time (the finish runs once per block), which keeps the
    # wider lane's cost to its key path.
    # RoPE's table (2,048 positions, 85 BRAM36 as a ROM) lives in DDR below the KV cache
    # and each job reads its rows (docs/attention.md), so block RAM holds the TLMM's
    # chunk buffer instead of UltraRAM (KV260Platform.ram_attrs). The attention reads
    # the KV records through the weight port, idle during ATTEND (kv_reads): a record of
    # 1,588 bits in 7 bus words, 3.5 of its words, takes 4.2 cycles at the four ports'
    # rate, 7.2 on the units' port.
    # A weight queue of 4,096 words of that port (256 KB, 8 URAM288: 19.7 us of the four
    # ports) keeps the weights streaming while NORM and ATTEND execute (PREFETCH;
    # docs/accelerator.md, "Weight queue"), and the controller reads its instructions 8 at
    # a time (fetch_block), a DDR latency per 8 rather than per instruction.
    "kv260": AcceleratorConfig(
        name="kv260", model=MODEL_PRESETS["bitnet-b1.58-large"],
        tlmm=TLMMConfig(group=3, tables=32, rows=16, table_mode="full", tokens=8,
                        max_k=4128, max_n=4096, table_storage="lutram"),
        vector_lanes=8, attention_lanes=1, attention_dims=24, memory_words=2 ** 24,
        memory_ports=4, weight_port_words=2, clock_hz=250_000_000, max_payload=4096,
        rope_table="memory", kv_reads="weights", weight_queue=4096, fetch_block=8),
}
# BitNet-2B-4T on the same board: the kv260 preset's units (engine, lanes, attention
# lanes, ports, clock) with the buffers sized to this model (what `tritium estimate`
# derives from the kv260 preset; tests/host/test_performance.py holds them equal):
# TLMM K and N up to the FFN's 6912, a 4096-token KV cache (5 kv heads of 128, 30
# layers: 197 MB, each record of 2,100 bits in five 512-bit words), 2**26 words (2 GiB,
# the KV260's largest contiguous DDR region) for the weights (about 0.5 GB packed), the
# 16-bit embedding and the int8 head (0.66 and 0.33 GB: a vocabulary of 128,256 rows of
# 2,560) and the cache. No weight queue: these buffers fill the UltraRAM its 8 blocks
# would take (docs/boards.md). The attention lane is 16 dimensions wide, the widest
# multiple of the 8 lanes up to the kv260's 24 that divides heads of 128.
ACCELERATOR_PRESETS["kv260-2b"] = dataclasses.replace(
    ACCELERATOR_PRESETS["kv260"], name="kv260-2b", model=MODEL_PRESETS["bitnet-b1.58-2b-4t"],
    tlmm=dataclasses.replace(ACCELERATOR_PRESETS["kv260"].tlmm, max_k=6912, max_n=6912),
    attention_dims=16, memory_words=2 ** 26, weight_queue=0)


# TLMM engines studied on their own (`tritium report --config`, `bench/tlmm.py --engine`).
# An accelerator preset's name means that preset's engine (tlmm_preset), so every name
# means one thing wherever it is used.
TLMM_PRESETS = {
    "small": TLMMConfig(group=3, tables=4, rows=4),
    "mid": TLMMConfig(group=3, tables=8, rows=8),
    # TeLLMe's G = 3, R = 16 with T = 32 instead of its 28, so that a K-chunk of 96
    # divides 1536 and 6912 (docs/resources.md): 1536 MACs per cycle, K up to the FFN's
    # 4096 padded to 4128, N up to 4096, a prefill tile of 8 tokens, register tables.
    "t32r16": TLMMConfig(group=3, tables=32, rows=16, table_mode="full", tokens=8,
                         max_k=4128, max_n=4096),
}


def tlmm_preset(name: str) -> TLMMConfig:
    """The engine called ``name``: a :data:`TLMM_PRESETS` entry or the engine of the
    accelerator preset of that name; ``ValueError`` lists the names."""
    if name in TLMM_PRESETS:
        return TLMM_PRESETS[name]
    if name in ACCELERATOR_PRESETS:
        return ACCELERATOR_PRESETS[name].tlmm
    raise ValueError(f"unknown TLMM engine {name!r}; engines: "
                     f"{', '.join([*TLMM_PRESETS, *ACCELERATOR_PRESETS])}")
