"""Plain configuration dataclasses shared by the gateware, the golden model and the host.

This module imports nothing but the standard library, so the golden model (``sim/``)
and the host (``host/``) may use it without depending on the gateware.
"""

import dataclasses
import json
from dataclasses import dataclass

__all__ = ["ModelConfig", "TileConfig", "MODEL_PRESETS"]

ACTIVATIONS = ("silu", "relu2")
ROPE_PAIRINGS = ("half", "interleaved")


def _check_positive(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, not {value!r}")


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
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ModelConfig.activation must be one of {ACTIVATIONS}, "
                             f"not {self.activation!r}")
        if self.rope_pairing not in ROPE_PAIRINGS:
            raise ValueError(f"ModelConfig.rope_pairing must be one of {ROPE_PAIRINGS}, "
                             f"not {self.rope_pairing!r}")
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
