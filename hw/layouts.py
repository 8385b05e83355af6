"""Wire formats shared by the gateware, the host packer and the testbenches.

Each layout is defined once here; the packer (``host/packer.py``) produces bits in
exactly this layout, which a test checks against :meth:`Layout.const`.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data

from amaranth.hdl import signed

from .config import AttentionConfig, TileConfig, TLMMConfig
from .fixedpoint import scale_layout

__all__ = ["weight_code_shape", "weight_word_layout", "act_beat_layout", "table_set_layout",
           "tlmm_job_layout", "tlmm_result_layout", "run_result_layout", "vector_beat_layout",
           "code_beat_layout", "layer_shape", "kv_head_shape", "position_shape",
           "kv_record_layout", "key_beat_layout", "attention_query_layout",
           "attention_result_layout", "rope_row_layout"]


def weight_code_shape(tile: TileConfig):
    """One packed code: G ternary weights w_k as ``sum((w_k + 1) * 3**k)``."""
    return unsigned(tile.code_bits)


def weight_word_layout(tile: TileConfig) -> data.ArrayLayout:
    """The codes the engine consumes in one cycle: ``word[r][t]`` for row r, table t.

    Element (r, t) sits at bit offset ``(r * tables + t) * code_bits``.
    """
    return data.ArrayLayout(data.ArrayLayout(weight_code_shape(tile), tile.tables), tile.rows)


def act_beat_layout(config: TLMMConfig) -> data.ArrayLayout:
    """One K-chunk of one token's int8 activations: G*T values, feature order."""
    return data.ArrayLayout(signed(8), config.k_per_word)


def table_set_layout(config: TLMMConfig) -> data.ArrayLayout:
    """The T lookup tables of one K-chunk: ``tables[t][e]`` is entry e of table t.

    Full mode: entry e is the sum for code e. Half mode: entry e is the sum for code
    ``e + (3**G - 1) / 2``; lower codes are the negations of their mirror codes.
    """
    return data.ArrayLayout(data.ArrayLayout(signed(config.entry_width), config.entries),
                            config.tables)


def tlmm_job_layout(config: TLMMConfig) -> data.StructLayout:
    """One matmul job: K-chunks, row blocks and tokens (each at least 1)."""
    return data.StructLayout({
        "chunks": unsigned(config.max_chunks.bit_length()),
        "row_blocks": unsigned(config.max_row_blocks.bit_length()),
        "tokens": unsigned(config.tokens.bit_length()),
    })


def tlmm_result_layout(config: TLMMConfig) -> data.StructLayout:
    """R finished accumulators of one row block of one token; ``last`` ends the job."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_width), config.rows),
        "last": unsigned(1),
    })


def run_result_layout() -> data.StructLayout:
    """How a run ended, as the controller reports it and RUN's reply carries it (in
    this order, little endian: ``hw/link/protocol.py`` ``RUN_REPLY_FORMAT``): its
    status, the ``runs`` counter (this run included) and its ``cycles``."""
    return data.StructLayout({"status": unsigned(8), "runs": unsigned(32),
                              "cycles": unsigned(32)})


def rope_row_layout(pairs: int) -> data.ArrayLayout:
    """A row of RoPE's table: ``pairs`` Q1.14 (cos, sin) pairs of one position, the
    ROM's word and, from bit 0 of a bus word, the table's in memory
    (``host/compiler.py`` ``rope_table_image``)."""
    return data.ArrayLayout(data.StructLayout({"cos": signed(16), "sin": signed(16)}), pairs)


def vector_beat_layout(lanes: int) -> data.StructLayout:
    """``lanes`` consecutive int32 Q19.12 elements of a vector; ``last`` ends the vector."""
    return data.StructLayout({"values": data.ArrayLayout(signed(32), lanes),
                              "last": unsigned(1)})


def code_beat_layout(lanes: int) -> data.StructLayout:
    """``lanes`` consecutive int8 activation codes of a vector; ``last`` ends the vector."""
    return data.StructLayout({"codes": data.ArrayLayout(signed(8), lanes),
                              "last": unsigned(1)})


def layer_shape(config: AttentionConfig):
    """A layer index."""
    return unsigned(max(1, (config.layers - 1).bit_length()))


def kv_head_shape(config: AttentionConfig):
    """A key/value head index."""
    return unsigned(max(1, (config.kv_heads - 1).bit_length()))


def position_shape(config: AttentionConfig):
    """A sequence position (token index in the KV cache)."""
    return unsigned(max(1, (config.capacity - 1).bit_length()))


def kv_record_layout(config: AttentionConfig) -> data.StructLayout:
    """What the KV cache keeps per (layer, kv head, token): int8 K (after RoPE) and V
    codes and their absmax scales (docs/numerics.md section 6)."""
    codes = data.ArrayLayout(signed(8), config.head_dim)
    return data.StructLayout({"k": codes, "v": codes, "k_scale": scale_layout,
                              "v_scale": scale_layout})


def key_beat_layout(config: AttentionConfig) -> data.StructLayout:
    """``dims_per_cycle`` dimensions of one cached key and value, as the attention core
    takes them; ``index`` is the key's position, ``last`` ends a pass over the cache."""
    codes = data.ArrayLayout(signed(8), config.dims_per_cycle)
    return data.StructLayout({"k": codes, "v": codes, "k_scale": scale_layout,
                              "v_scale": scale_layout, "index": position_shape(config),
                              "last": unsigned(1)})


def attention_query_layout(config: AttentionConfig) -> data.StructLayout:
    """One query head loaded into a lane: codes, scale and the query's position (its
    last visible key); ``last`` ends a block of at most ``lanes`` queries."""
    return data.StructLayout({"codes": data.ArrayLayout(signed(8), config.head_dim),
                              "scale": scale_layout, "position": position_shape(config),
                              "last": unsigned(1)})


def attention_result_layout(config: AttentionConfig) -> data.StructLayout:
    """``io_lanes`` dimensions of one lane's int32 Q.12 output; ``last`` ends a block."""
    return data.StructLayout({"values": data.ArrayLayout(signed(32), config.io_lanes),
                              "last": unsigned(1)})
