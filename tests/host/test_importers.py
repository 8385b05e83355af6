"""Model import: round trips through every checkpoint format, and every kind of bad input.

No checkpoint can be downloaded here, so the tests write small ones in each layout
themselves (safetensors by hand and with the ``safetensors`` package, GGUF with
``gguf.GGUFWriter``) from a random model, read them back with ``load_model`` and
compare codes, scales, float tensors and the reference model's logits.
"""

import dataclasses
import io
import json
import re
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize
from safetensors.numpy import save_file

import tritium.host.importers as importers
from tritium.host.errors import ModelFormatError
from tritium.host.importers import load_model, read_model_config
from tritium.host.importers.hf import read_hf_config, unpack_codes
from tritium.host.model import Layer, Model, TernaryTensor
from tritium.hw.config import MODEL_PRESETS, ModelConfig
from tritium.sim.reference import ReferenceModel

Q = GGMLQuantizationType

# Every in_features is a multiple of 256, as TQ1_0 / TQ2_0 blocks need.
CONFIG = ModelConfig(name="roundtrip", vocab_size=300, hidden=256, layers=2, heads=4,
                     kv_heads=2, head_dim=64, ffn=512, activation="silu",
                     rope_theta=10000.0, norm_eps=1e-5, max_context=128,
                     tied_embedding=True)
PROMPT = [1, 5, 299, 42, 7, 7]

HF_LINEARS = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
              "wo": "self_attn.o_proj", "w_gate": "mlp.gate_proj", "w_up": "mlp.up_proj",
              "w_down": "mlp.down_proj"}
HF_LAYOUTS = {  # architecture, attention sub-norm, FFN sub-norm
    "1bitllm": ("BitnetForCausalLM", "self_attn.inner_attn_ln", "mlp.ffn_layernorm"),
    "microsoft": ("BitNetForCausalLM", "self_attn.attn_sub_norm", "mlp.ffn_sub_norm"),
}
GGUF_LINEARS = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
                "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down"}


# -- building blocks ------------------------------------------------------------------

def to_bf16_bits(values) -> np.ndarray:
    """bf16 bit patterns of ``values``, rounded to nearest even."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_round(values) -> np.ndarray:
    return (to_bf16_bits(values).astype(np.uint32) << 16).view(np.float32)


def random_model(config=CONFIG, seed=0) -> Model:
    """A random model whose every float is exact in bf16 and fp16 (no tiny magnitudes)."""
    rng = np.random.default_rng(seed)

    def floats(*shape):
        return bf16_round(rng.uniform(0.05, 2.0, shape) * rng.choice([-1.0, 1.0], shape))

    def ternary(shape):
        codes = rng.integers(-1, 2, size=shape).astype(np.int8)
        return TernaryTensor(codes, float(bf16_round(rng.uniform(0.02, 0.2))))

    def layer():
        norms = {"attn_norm": config.hidden, "attn_sub_norm": config.q_dim,
                 "ffn_norm": config.hidden, "ffn_sub_norm": config.ffn}
        parts = {name: np.abs(floats(size)) for name, size in norms.items()}
        parts.update({name: ternary(shape) for name, shape in config.linear_shapes().items()})
        return Layer(**parts)

    embedding_shape = (config.vocab_size, config.hidden)
    lm_head = None if config.tied_embedding else floats(*embedding_shape)
    return Model(config, floats(*embedding_shape), [layer() for _ in range(config.layers)],
                 np.abs(floats(config.hidden)), lm_head).validate()


def logits(model: Model) -> np.ndarray:
    reference = ReferenceModel(model)
    return reference.forward(PROMPT, reference.new_cache())


def assert_same_model(loaded: Model, original: Model, scale_rtol: float):
    """Codes and float tensors exact, scales within ``scale_rtol``, logits accordingly."""
    assert dataclasses.replace(loaded.config, name=original.config.name) == original.config
    np.testing.assert_array_equal(loaded.embedding, original.embedding)
    np.testing.assert_array_equal(loaded.output_norm, original.output_norm)
    if original.lm_head is None:
        assert loaded.lm_head is None
    else:
        np.testing.assert_array_equal(loaded.lm_head, original.lm_head)
    for got, want in zip(loaded.layers, original.layers):
        for name in ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        for name in CONFIG.linear_shapes():
            np.testing.assert_array_equal(getattr(got, name).codes, getattr(want, name).codes)
            assert getattr(got, name).scale == pytest.approx(getattr(want, name).scale,
                                                            rel=scale_rtol, abs=0)
    want_logits = logits(original)
    # A scale off by r moves logits by about r; act_quant may then round an input
    # element to the neighbouring step, which the 5 % margin covers.
    tolerance = 1e-9 if scale_rtol == 0 else 0.05 * np.abs(want_logits).max()
    np.testing.assert_allclose(logits(loaded), want_logits, rtol=0, atol=tolerance)


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message, message


@dataclasses.dataclass
class Lazy:
    """A tensor made only when it is written, so that a full-size checkpoint is written
    one tensor at a time: its dtype and shape, and ``make()``."""
    dtype: type
    shape: tuple
    make: object

    @staticmethod
    def value(tensor) -> np.ndarray:
        return tensor.make() if isinstance(tensor, Lazy) else tensor


# -- Hugging Face writers -------------------------------------------------------------

SAFETENSORS_STORAGE = {"U8": "u1", "BF16": "<u2", "F16": "<f2", "F32": "<f4"}
CHUNK_ELEMENTS = 2 ** 22        # elements converted at a time (a full-size embedding)


def write_safetensors(path, tensors: dict, float_dtype: str = "BF16"):
    """Our own writer, as the safetensors package cannot write bf16 from NumPy.

    Float tensors are stored as ``float_dtype``; uint8 tensors as U8. The header comes
    from the shapes, then each tensor is made (:class:`Lazy`) and written in turn.
    """
    header, kinds, offset = {}, {}, 0
    for name, tensor in tensors.items():
        kinds[name] = "U8" if np.dtype(tensor.dtype) == np.uint8 else float_dtype
        size = int(np.prod(tensor.shape)) * np.dtype(SAFETENSORS_STORAGE[kinds[name]]).itemsize
        header[name] = {"dtype": kinds[name], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as file:
        file.write(len(header_bytes).to_bytes(8, "little") + header_bytes)
        for name, tensor in tensors.items():
            flat = Lazy.value(tensor).reshape(-1)
            for start in range(0, flat.size, CHUNK_ELEMENTS):
                chunk = flat[start:start + CHUNK_ELEMENTS]
                raw = to_bf16_bits(chunk) if kinds[name] == "BF16" else \
                    chunk.astype(SAFETENSORS_STORAGE[kinds[name]])
                file.write(raw.tobytes())


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """transformers' pack_weights: row i * ceil(out/4) + r goes to bits 2i of packed row r."""
    rows = -(-codes.shape[0] // 4)
    shifted = np.zeros((rows * 4, codes.shape[1]), dtype=np.uint8)
    shifted[:codes.shape[0]] = codes + 1
    fields = shifted.reshape(4, rows, -1) << (2 * np.arange(4, dtype=np.uint8))[:, None, None]
    return np.bitwise_or.reduce(fields, axis=0)


def hf_config(model: Model, layout: str, **overrides) -> dict:
    config = model.config
    return {"architectures": [HF_LAYOUTS[layout][0]], "hidden_size": config.hidden,
            "num_hidden_layers": config.layers, "num_attention_heads": config.heads,
            "num_key_value_heads": config.kv_heads, "intermediate_size": config.ffn,
            "vocab_size": config.vocab_size, "rms_norm_eps": config.norm_eps,
            "rope_theta": config.rope_theta, "max_position_embeddings": config.max_context,
            "hidden_act": config.activation, "tie_word_embeddings": config.tied_embedding,
            **overrides}


def hf_tensors(model: Model, layout: str, packed=False, scale_is_divisor=True,
               lazy=False) -> dict:
    """Hugging Face tensor name -> array; with ``lazy``, the linears as :class:`Lazy`."""
    _, attn_sub_norm, ffn_sub_norm = HF_LAYOUTS[layout]
    tensors = {"model.embed_tokens.weight": model.embedding,
               "model.norm.weight": model.output_norm}
    if model.lm_head is not None:
        tensors["lm_head.weight"] = model.lm_head
    for i, layer in enumerate(model.layers):
        prefix = f"model.layers.{i}"
        tensors[f"{prefix}.input_layernorm.weight"] = layer.attn_norm
        tensors[f"{prefix}.post_attention_layernorm.weight"] = layer.ffn_norm
        tensors[f"{prefix}.{attn_sub_norm}.weight"] = layer.attn_sub_norm
        tensors[f"{prefix}.{ffn_sub_norm}.weight"] = layer.ffn_sub_norm
        for field, name in HF_LINEARS.items():
            tensor = getattr(layer, field)
            rows, columns = tensor.codes.shape
            if packed:
                weight = Lazy(np.uint8, (-(-rows // 4), columns),
                              lambda tensor=tensor: pack_codes(tensor.codes))
                weight_scale = 1 / tensor.scale if scale_is_divisor else tensor.scale
                tensors[f"{prefix}.{name}.weight_scale"] = np.array([weight_scale], np.float32)
            else:
                weight = Lazy(np.float32, (rows, columns),
                              lambda tensor=tensor: latent_weights(tensor))
            tensors[f"{prefix}.{name}.weight"] = weight if lazy else weight.make()
    return tensors


def latent_weights(tensor: TernaryTensor) -> np.ndarray:
    """Latent weights whose mean |W| is the scale and that quantize to the codes."""
    nonzero = np.mean(np.abs(tensor.codes))
    return (tensor.codes * (tensor.scale / nonzero)).astype(np.float32)


def write_hf(directory, model: Model, layout="microsoft", float_dtype="BF16", packed=False,
             config_overrides=None, tensors=None, scale_is_divisor=True):
    directory.mkdir(exist_ok=True)
    config = hf_config(model, layout, **(config_overrides or {}))
    if packed and not scale_is_divisor:
        config["quantization_config"] = {"quant_method": "bitnet",
                                         "linear_class": "autobitlinear",
                                         "quantization_mode": "offline"}
    (directory / "config.json").write_text(json.dumps(config))
    if tensors is None:
        tensors = hf_tensors(model, layout, packed, scale_is_divisor)
    write_safetensors(directory / "model.safetensors", tensors, float_dtype)
    return directory


# -- GGUF writer ----------------------------------------------------------------------

@dataclasses.dataclass
class I2S:
    """An I2_S tensor for ``write_gguf``: its bytes and its shape (NumPy order)."""
    raw: np.ndarray
    shape: tuple


I2S_TYPE = 36
I2S_BLOCKS = {"x86": 128, "arm": 64}


def gguf_keys(config: ModelConfig) -> dict:
    return {"context_length": config.max_context, "embedding_length": config.hidden,
            "block_count": config.layers, "feed_forward_length": config.ffn,
            "attention.head_count": config.heads, "attention.head_count_kv": config.kv_heads,
            "attention.layer_norm_rms_epsilon": config.norm_eps,
            "rope.freq_base": config.rope_theta}


def gguf_tensors(model: Model, lazy=False) -> dict:
    """GGUF tensor name -> float values (ternary linears as codes * scale; with ``lazy``,
    as :class:`Lazy`)."""
    tensors = {"token_embd.weight": model.embedding, "output_norm.weight": model.output_norm}
    if model.lm_head is not None:
        tensors["output.weight"] = model.lm_head
    for i, layer in enumerate(model.layers):
        for name in ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"):
            tensors[f"blk.{i}.{name}.weight"] = getattr(layer, name)
        for field, name in GGUF_LINEARS.items():
            tensor = getattr(layer, field)
            weight = Lazy(np.float64, tensor.codes.shape, tensor.dequantize)
            tensors[f"blk.{i}.{name}.weight"] = weight if lazy else weight.make()
    return tensors


def is_linear(name: str) -> bool:
    return any(f".{linear}." in name for linear in GGUF_LINEARS.values())


def write_gguf(path, tensors: dict, keys: dict, arch="bitnet", ternary_type=Q.F32,
               metadata=None):
    """Linears in ``ternary_type``, the rest in F32 (F16 for the embedding with F16).

    A tensor given as ``(raw_bytes, type)`` is written as it is, an :class:`I2S` as
    I2_S, a :class:`Lazy` made then. ``metadata(writer)``, if given, writes more keys (a
    tokenizer's). Tensors go to a temporary file as they are added, not into memory.
    """
    writer = GGUFWriter(str(path), arch, use_temp_file=True)
    if metadata is not None:
        metadata(writer)
    for key, value in keys.items():
        if isinstance(value, float):
            writer.add_float32(f"{arch}.{key}", value)
        else:
            writer.add_uint32(f"{arch}.{key}", value)
    for name, values in tensors.items():
        values = Lazy.value(values)
        if isinstance(values, I2S):
            # The gguf package knows no type 36: give the shape, and bytes as int8 so the
            # writer does not look the type up to turn a byte shape into it.
            writer.add_tensor(name, values.raw.view(np.int8), raw_shape=values.shape,
                              raw_dtype=I2S_TYPE)
            continue
        if isinstance(values, tuple):
            raw, raw_type = values
        elif is_linear(name) or (name == "token_embd.weight" and ternary_type == Q.F16):
            raw_type = ternary_type
            raw = quantize(np.asarray(values, dtype=np.float32), ternary_type)
        else:
            raw, raw_type = np.asarray(values, dtype=np.float32), Q.F32
        writer.add_tensor(name, raw, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def pack_i2s(tensor: TernaryTensor, layout="x86") -> I2S:
    """I2_S bytes as docs/model_import.md draws them, value by value as bitnet.cpp's
    quantize_i2_s loops: value j of a block goes to byte j % g of the block, bits
    6 - 2 (j // g) up, as code + 1 (g = a quarter of the block); then the float32
    scale and 28 bytes of padding."""
    block = I2S_BLOCKS[layout]
    group = block // 4
    codes = tensor.codes.reshape(-1)
    index = np.arange(codes.size)
    position = index % block
    byte = index // block * group + position % group
    shift = 6 - 2 * (position // group)
    packed = np.zeros(codes.size // 4, dtype=np.uint8)
    np.bitwise_or.at(packed, byte, ((codes + 1).astype(np.uint8) << shift).astype(np.uint8))
    trailer = np.zeros(32, dtype=np.uint8)
    trailer[:4] = np.array([tensor.scale], "<f4").view(np.uint8)
    return I2S(np.concatenate([packed, trailer]), tensor.codes.shape)


def i2s_tensors(model: Model, layout="x86") -> dict:
    """``gguf_tensors`` with every linear as I2_S, as Microsoft's converter writes them."""
    tensors = gguf_tensors(model)
    for i, layer in enumerate(model.layers):
        for field, name in GGUF_LINEARS.items():
            tensors[f"blk.{i}.{name}.weight"] = pack_i2s(getattr(layer, field), layout)
    return tensors


def write_model_gguf(path, model: Model, ternary_type=Q.F32, arch=None):
    """As llama.cpp would: architecture ``bitnet`` builds SiLU, ``bitnet-b1.58`` ReLU^2."""
    if arch is None:
        arch = "bitnet" if model.config.activation == "silu" else "bitnet-b1.58"
    return write_gguf(path, gguf_tensors(model), gguf_keys(model.config), arch, ternary_type)


# -- round trips ----------------------------------------------------------------------

def test_npz_round_trip(tmp_path):
    model = random_model()
    model.save_npz(tmp_path / "model.npz")
    assert_same_model(load_model(tmp_path / "model.npz"), model, scale_rtol=0)


@pytest.mark.parametrize("ternary_type", [Q.F32, Q.F16, Q.BF16, Q.TQ1_0, Q.TQ2_0],
                         ids=lambda t: t.name)
def test_gguf_round_trip(tmp_path, ternary_type):
    model = random_model()
    path = write_model_gguf(tmp_path / "model.gguf", model, ternary_type)
    # The model's scales are exact in fp16 and bf16, so every format keeps them exactly.
    assert_same_model(load_model(path), model, scale_rtol=0)


def test_gguf_untied_head_and_relu2_architecture(tmp_path):
    model = random_model(dataclasses.replace(CONFIG, tied_embedding=False, activation="relu2"))
    path = write_model_gguf(tmp_path / "model.gguf", model, Q.TQ2_0, arch="bitnet-b1.58")
    assert_same_model(load_model(path), model, scale_rtol=0)


def test_gguf_bitnet_architecture_is_silu(tmp_path):
    """llama.cpp's build_bitnet (the 1bitLLM conversion) uses LLM_FFN_SILU."""
    path = write_model_gguf(tmp_path / "m.gguf", random_model(), arch="bitnet")
    assert load_model(path).config.activation == "silu"


def test_gguf_scale_tensor_multiplies_the_linear(tmp_path):
    model = random_model()
    tensors = gguf_tensors(model)
    tensors["blk.0.attn_q.weight"] = model.layers[0].wq.codes.astype(np.float32)
    tensors["blk.0.attn_q.scale"] = np.array([model.layers[0].wq.scale], np.float32)
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    assert_same_model(load_model(path), model, scale_rtol=1e-7)


def test_gguf_accepts_block_scales_one_fp16_step_apart(tmp_path):
    model = random_model()
    scale = np.float16(model.layers[0].wq.scale)
    next_scale = np.nextafter(scale, np.float16(np.inf))
    tensors = gguf_tensors(model)
    tensors["blk.0.attn_q.weight"][0] = model.layers[0].wq.codes[0] * float(next_scale)
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG), ternary_type=Q.TQ2_0)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.layers[0].wq.codes, model.layers[0].wq.codes)
    assert loaded.layers[0].wq.scale == pytest.approx(float(scale), rel=2 ** -10)


RELU2 = dataclasses.replace(CONFIG, activation="relu2")


def assert_same_weights(loaded: Model, other: Model):
    """Every code and scale, float tensor and the config (but the name) the same."""
    assert dataclasses.replace(loaded.config, name=other.config.name) == other.config
    for got, want in zip(loaded.layers, other.layers):
        for name in CONFIG.linear_shapes():
            np.testing.assert_array_equal(getattr(got, name).codes, getattr(want, name).codes)
            assert getattr(got, name).scale == getattr(want, name).scale
    np.testing.assert_array_equal(loaded.embedding, other.embedding)


@pytest.mark.parametrize("arch", ["bitnet-b1.58", "bitnet-25"])
def test_i2s_equals_its_tq2_twin(tmp_path, arch):
    """Microsoft's 2B-4T architectures: I2_S read in the x86 layout of the released
    files, equal to the same weights written as TQ2_0 (the scales are exact in fp16)."""
    model = random_model(RELU2)
    keys = gguf_keys(RELU2)
    i2s = write_gguf(tmp_path / "i2s.gguf", i2s_tensors(model), keys, arch)
    twin = write_gguf(tmp_path / "tq2.gguf", gguf_tensors(model), keys, arch, Q.TQ2_0)
    loaded = load_model(i2s)
    assert_same_weights(loaded, load_model(twin))
    assert_same_model(loaded, model, scale_rtol=0)


def test_i2s_arm_layout_when_asked(tmp_path):
    """The ARM layout (64-value blocks) reads back when asked for; read as x86, the
    same bytes give other codes, which is why the layout matters."""
    model = random_model(RELU2)
    path = write_gguf(tmp_path / "arm.gguf", i2s_tensors(model, "arm"), gguf_keys(RELU2),
                      "bitnet-b1.58")
    assert_same_model(load_model(path, i2s_layout="arm"), model, scale_rtol=0)
    as_x86 = load_model(path).layers[0].wq.codes
    assert not np.array_equal(as_x86, model.layers[0].wq.codes)
    assert sorted(as_x86.reshape(-1)) == sorted(model.layers[0].wq.codes.reshape(-1))


def test_i2s_block_drawing_byte_by_byte():
    """The first bytes of an x86 block, as the drawing in docs/model_import.md says:
    byte j holds values j, j + 32, j + 64, j + 96 in bits 7-6, 5-4, 3-2, 1-0."""
    from tritium.host.importers.i2s import I2S_LAYOUTS, decode_i2s
    raw = np.zeros(128 // 4 + 32, dtype=np.uint8)
    raw[0] = 0b10_01_00_01          # values 0, 32, 64, 96: +1, 0, -1, 0
    raw[1] = 0b01_10_01_00          # values 1, 33, 65, 97: 0, +1, 0, -1
    raw[2:32] = 0b01_01_01_01       # the rest 0
    raw[32:36] = np.array([0.5], "<f4").view(np.uint8)
    tensor = decode_i2s("t.gguf", "w", raw, (2, 64), I2S_LAYOUTS["x86"])
    values = tensor.codes.reshape(-1)
    assert [values[i] for i in (0, 32, 64, 96, 1, 33, 65, 97)] == [1, 0, -1, 0, 0, 1, 0, -1]
    assert np.count_nonzero(values) == 4 and tensor.scale == 0.5


def test_i2s_in_a_bitnet_file_needs_its_layout(tmp_path, capsys):
    """Architecture `bitnet` files are quantized wherever bitnet.cpp ran: no layout can
    be assumed, so the file is refused (one line, exit status 2) until one is given."""
    from tritium.cli.testing import assert_one_line_error as cli_error
    model = random_model()
    path = write_gguf(tmp_path / "m.gguf", i2s_tensors(model, "arm"), gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "m.gguf", "cannot tell the layout of its I2_S tensors",
                          "--i2s-layout")
    cli_error(capsys, "info", "--model", path, match="cannot tell the layout")
    assert_same_model(load_model(path, i2s_layout="arm"), model, scale_rtol=0)


@pytest.mark.parametrize("layout, arch", [("x86", "bitnet-b1.58"), ("arm", "bitnet")])
def test_i2s_twin_loaded_through_the_cli(tmp_path, capsys, layout, arch):
    """`tritium eval --tokens` gives the same logits for an I2_S file (its layout named
    where the architecture needs it) and its TQ2_0 twin."""
    from tritium.cli import main
    model = random_model(RELU2)
    i2s = write_gguf(tmp_path / "i2s.gguf", i2s_tensors(model, layout), gguf_keys(RELU2), arch)
    twin = write_gguf(tmp_path / "tq2.gguf", gguf_tensors(model), gguf_keys(RELU2), arch,
                      Q.TQ2_0)
    for name, path, extra in (("i2s", i2s, ["--i2s-layout", layout]), ("tq2", twin, [])):
        assert main(["eval", "--model", str(path), "--tokens", "1,5,299,42", "--logits",
                     str(tmp_path / f"{name}.npy"), *extra]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(np.load(tmp_path / "i2s.npy"), np.load(tmp_path / "tq2.npy"))


# -- tritium run on a random checkpoint of each named shape -----------------------------

# The layouts each named shape's published checkpoints come in: Hugging Face (latent fp16
# weights for 1bitLLM's 0.7B, packed ternary for Microsoft's 2B-4T) and llama.cpp's GGUF.
NAMED_CHECKPOINTS = {
    "bitnet-b1.58-large": {"layout": "1bitllm", "float_dtype": "F16", "packed": False,
                           "arch": "bitnet"},
    "bitnet-b1.58-2b-4t": {"layout": "microsoft", "float_dtype": "BF16", "packed": True,
                           "arch": "bitnet-b1.58"},
}
SHAPE_FIELDS = ("vocab_size", "hidden", "layers", "heads", "kv_heads", "head_dim", "ffn",
                "activation", "tied_embedding", "max_context")


def named_shape_cases():
    """Each named shape at full size (slow), and a small one with its head grouping,
    activation, tying and layouts in the default run."""
    for name, preset in MODEL_PRESETS.items():
        if name not in NAMED_CHECKPOINTS:
            continue
        yield pytest.param(name, preset, marks=pytest.mark.slow, id=name)
        small = dataclasses.replace(preset, name=f"small-{name}", vocab_size=1000, hidden=256,
                                    layers=2, heads=4, kv_heads=4 * preset.kv_heads // preset.heads,
                                    head_dim=64, ffn=512, max_context=64)
        yield pytest.param(name, small, id=f"small-{name}")


def write_vocabulary(path, size: int):
    """A byte-level BPE tokenizer.json of exactly ``size`` tokens, the 256 byte tokens
    then fillers, so that every id a random model picks decodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    vocab = {token: i for i, token in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update({f"filler{i}": i for i in range(len(vocab), size)})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.save(str(path))


def write_named_checkpoints(directory, config: ModelConfig, style: str):
    """A random model of ``config`` as a Hugging Face directory and a TQ2_0 GGUF file in
    the layouts of the named shape ``style``, each with a tokenizer.json of the model's
    vocabulary beside it, written one tensor at a time: (directory, GGUF path). The
    model itself is not kept."""
    how = NAMED_CHECKPOINTS[style]
    model = Model.random(config, seed=0)
    hf = write_hf(directory / "hf", model, how["layout"], how["float_dtype"], how["packed"],
                  tensors=hf_tensors(model, how["layout"], how["packed"], lazy=True))
    (directory / "gguf").mkdir()
    gguf = write_gguf(directory / "gguf" / "model.gguf", gguf_tensors(model, lazy=True),
                      gguf_keys(config), how["arch"], Q.TQ2_0)
    for place in (hf, gguf.parent):
        write_vocabulary(place / "tokenizer.json", config.vocab_size)
    return hf, gguf


@pytest.mark.parametrize("style, config", list(named_shape_cases()))
def test_run_on_a_random_checkpoint_of_each_named_shape(tmp_path, capsys, style, config):
    """`tritium run` end to end on the golden and the reference backends, from a
    checkpoint of the shape in each layout it is published in (written here: nothing is
    downloaded). On the small shapes the golden run is also the golden model's own
    greedy choice."""
    from tritium.cli.testing import run_cli
    from tritium.host.runtime import Session, generate, make_backend
    from tritium.host.tokenizer import load_tokenizer
    for path in write_named_checkpoints(tmp_path, config, style):
        code, out, _ = run_cli(capsys, "info", "--model", path, "--json")
        info = json.loads(out)
        assert code == 0
        assert {field: info[field] for field in SHAPE_FIELDS} == \
            {field: getattr(config, field) for field in SHAPE_FIELDS}
        for backend in ("golden", "reference"):
            code, out, _ = run_cli(capsys, "run", "--model", path, "--prompt", "Hello", "-n", 3,
                                   "--backend", backend, "--ignore-eos", "--json")
            result = json.loads(out)
            assert code == 0 and result["prompt_tokens"] == 5 and len(result["tokens"]) == 3
            assert all(0 <= token < config.vocab_size for token in result["tokens"])
            if backend == "golden" and config.layers == 2:
                model = load_model(path)
                prompt = load_tokenizer(path, model).encode("Hello")
                assert result["tokens"] == list(generate(Session(make_backend("golden", model)),
                                                         prompt, 3))


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, for what the CLI shows only on one."""

    def isatty(self):
        return True


def test_run_shows_its_loading_progress_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    from tritium.cli import main
    from tritium.cli.testing import run_cli
    style = "bitnet-b1.58-2b-4t"
    config = dict((case.id, case.values[1]) for case in named_shape_cases())[f"small-{style}"]
    monkeypatch.setenv("COLUMNS", "500")        # the bar's line holds the whole path
    for path in write_named_checkpoints(tmp_path, config, style):
        argv = ["run", "--model", str(path), "--prompt", "Hi", "-n", "2", "--json"]
        with monkeypatch.context() as terminal:
            terminal.setattr(sys, "stderr", Terminal())
            assert main(argv) == 0
            shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", sys.stderr.getvalue())   # no colours
        json.loads(capsys.readouterr().out)     # stdout holds the JSON object alone
        assert f"loading {path}" in shown and "2/2 layers" in shown
        assert re.search(r"preparing \S+ on golden \S+ 3/3 layers", shown), shown
        code, out, err = run_cli(capsys, *argv)  # not a terminal: nothing on stderr
        assert code == 0 and json.loads(out) and err == ""


@pytest.mark.parametrize("layout, float_dtype, tied", [
    ("1bitllm", "F16", False), ("microsoft", "BF16", True), ("microsoft", "F32", False)])
def test_hf_latent_round_trip(tmp_path, layout, float_dtype, tied):
    activation = "silu" if layout == "1bitllm" else "relu2"
    model = random_model(dataclasses.replace(CONFIG, activation=activation, tied_embedding=tied))
    write_hf(tmp_path / "hf", model, layout, float_dtype)
    # The latent weights are stored rounded, so their mean |W| moves by that rounding.
    scale_rtol = {"F16": 2 ** -10, "BF16": 2 ** -7, "F32": 1e-6}[float_dtype]
    assert_same_model(load_model(tmp_path / "hf"), model, scale_rtol)


@pytest.mark.parametrize("scale_is_divisor", [True, False], ids=["bitlinear", "autobitlinear"])
def test_hf_packed_round_trip(tmp_path, scale_is_divisor):
    model = random_model()
    write_hf(tmp_path / "hf", model, packed=True, scale_is_divisor=scale_is_divisor)
    # A bf16 divisor 1/s rounds; a bf16 multiplier s is exact for this model.
    assert_same_model(load_model(tmp_path / "hf"), model, 2 ** -7 if scale_is_divisor else 0)


def test_unpack_codes_matches_transformers_docstring_example():
    packed = np.array([[0b10100001, 0b00011000], [0b10010000, 0b00001010]], dtype=np.uint8)
    expected = [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]]
    assert unpack_codes(packed, 8).tolist() == expected


def test_hf_latent_weights_are_quantized_with_weight_quant(tmp_path):
    model = random_model()
    tensors = hf_tensors(model, "microsoft")
    latent = np.random.default_rng(1).standard_normal(CONFIG.linear_shapes()["w_up"]) * 0.03
    tensors["model.layers.1.mlp.up_proj.weight"] = latent
    write_hf(tmp_path / "hf", model, float_dtype="F32", tensors=tensors)
    loaded = load_model(tmp_path / "hf").layers[1].w_up
    stored = latent.astype(np.float32).astype(np.float64)
    scale = np.mean(np.abs(stored))
    np.testing.assert_array_equal(loaded.codes, np.clip(np.rint(stored / scale), -1, 1))
    assert loaded.scale == pytest.approx(scale, rel=1e-12)


def test_hf_written_by_safetensors_package_and_sharded(tmp_path):
    model = random_model(dataclasses.replace(CONFIG, tied_embedding=False))
    directory = tmp_path / "hf"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(hf_config(model, "microsoft")))
    tensors = {name: value.astype(np.float16)
               for name, value in hf_tensors(model, "microsoft").items()}
    names = sorted(tensors)
    save_file({name: tensors[name] for name in names[:40]},
              str(directory / "model-00001-of-00002.safetensors"))
    save_file({name: tensors[name] for name in names[40:]},
              str(directory / "model-00002-of-00002.safetensors"))
    assert_same_model(load_model(directory), model, scale_rtol=2 ** -10)


@pytest.mark.parametrize("layout, expected", [
    ("1bitllm", ("silu", 1e-6, 10000.0)), ("microsoft", ("relu2", 1e-5, 500000.0))])
def test_hf_config_defaults_are_the_architecture_class_defaults(tmp_path, layout, expected):
    config = hf_config(random_model(), layout)
    for key in ("num_key_value_heads", "rms_norm_eps", "rope_theta", "hidden_act",
                "max_position_embeddings", "tie_word_embeddings"):
        del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = read_hf_config(tmp_path)
    assert (loaded.activation, loaded.norm_eps, loaded.rope_theta) == expected
    assert (loaded.kv_heads, loaded.max_context, loaded.tied_embedding) == (CONFIG.heads, 2048,
                                                                            False)


# The published config.json files (1bitLLM/bitnet_b1_58-large, microsoft/bitnet-b1.58-2B-4T).
PUBLISHED_CONFIGS = {
    "bitnet-b1.58-large": {
        "architectures": ["BitnetForCausalLM"], "attention_bias": False, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 1536,
        "initializer_range": 0.02, "input_bits": 8, "intermediate_size": 4096,
        "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 16,
        "num_hidden_layers": 24, "num_key_value_heads": 16, "pad_token_id": 32000,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float16",
        "use_cache": True, "vocab_size": 32002, "weight_bits": 1},
    "bitnet-b1.58-2b-4t": {
        "architectures": ["BitNetForCausalLM"], "bos_token_id": 128000,
        "eos_token_id": 128001, "hidden_act": "relu2", "hidden_size": 2560,
        "initializer_range": 0.02, "intermediate_size": 6912,
        "max_position_embeddings": 4096, "model_type": "bitnet", "rms_norm_eps": 1e-05,
        "num_attention_heads": 20, "num_hidden_layers": 30, "num_key_value_heads": 5,
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": 128256,
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "online"}},
}


@pytest.mark.parametrize("preset", PUBLISHED_CONFIGS)
def test_published_hf_configs_map_to_the_presets(tmp_path, preset):
    directory = tmp_path / preset
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(PUBLISHED_CONFIGS[preset]))
    assert read_hf_config(directory) == MODEL_PRESETS[preset]


def test_hf_rope_theta_in_rope_parameters(tmp_path):
    config = {**PUBLISHED_CONFIGS["bitnet-b1.58-2b-4t"],
              "rope_parameters": {"rope_type": "default", "rope_theta": 250000.0}}
    del config["rope_theta"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_hf_config(tmp_path).rope_theta == 250000.0


def test_hf_paths_inside_the_directory_load_the_directory(tmp_path):
    model = random_model()
    directory = write_hf(tmp_path / "hf", model)
    for path in (directory / "config.json", directory / "model.safetensors"):
        assert_same_model(load_model(path), model, scale_rtol=2 ** -7)


def test_shipped_preset_is_looked_up_by_name(tmp_path, monkeypatch):
    model = random_model()
    model.save_npz(tmp_path / "tiny.npz")
    monkeypatch.setitem(importers.SHIPPED_MODELS, "tiny", tmp_path / "tiny.npz")
    assert_same_model(load_model("tiny"), model, scale_rtol=0)


def test_shipped_preset_name_wins_over_a_path(tmp_path, monkeypatch):
    model = random_model()
    model.save_npz(tmp_path / "weights.npz")
    monkeypatch.setitem(importers.SHIPPED_MODELS, "tiny", tmp_path / "weights.npz")
    (tmp_path / "tiny").mkdir()                     # not a checkpoint
    monkeypatch.chdir(tmp_path)
    assert_same_model(load_model("tiny"), model, scale_rtol=0)


def test_shipped_weights_location_is_inside_the_package():
    assert importers.SHIPPED_MODELS["tiny"].parts[-2:] == ("models", "tiny.npz")
    assert importers.SHIPPED_MODELS["tiny"].parent.parent.name == "host"


# -- bad input ------------------------------------------------------------------------

def test_shipped_weights_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(importers.SHIPPED_MODELS, "tiny", tmp_path / "tiny.npz")
    with pytest.raises(ModelFormatError) as excinfo:
        load_model("tiny")
    assert_one_line_error(excinfo, "tiny.npz", "missing")


def test_preset_without_shipped_weights():
    with pytest.raises(ModelFormatError) as excinfo:
        load_model("bitnet-b1.58-large")
    assert_one_line_error(excinfo, "bitnet-b1.58-large", "no shipped weights")


@pytest.mark.parametrize("name", ["missing.gguf", "missing.npz", "missing_dir"])
def test_missing_file(tmp_path, name):
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / name)
    assert_one_line_error(excinfo, name, "no such file")


def _truncate(path, keep_fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])


@pytest.mark.parametrize("keep_fraction", [0.6, 0.001])
def test_truncated_safetensors(tmp_path, keep_fraction):
    directory = write_hf(tmp_path / "hf", random_model())
    _truncate(directory / "model.safetensors", keep_fraction)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(directory)
    assert_one_line_error(excinfo, "model.safetensors", "truncated")


@pytest.mark.parametrize("keep_fraction", [0.6, 0.001])
def test_truncated_gguf(tmp_path, keep_fraction):
    path = write_model_gguf(tmp_path / "model.gguf", random_model())
    _truncate(path, keep_fraction)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "truncated")


def test_truncated_npz(tmp_path):
    random_model().save_npz(tmp_path / "model.npz")
    _truncate(tmp_path / "model.npz")
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "model.npz")
    assert_one_line_error(excinfo, "model.npz", "not a readable")


def test_unknown_format_file(tmp_path):
    (tmp_path / "weights.txt").write_text("hello")
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "weights.txt")
    assert_one_line_error(excinfo, "weights.txt", "unknown model format")


def test_unknown_format_directory_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path)
    assert_one_line_error(excinfo, tmp_path, "config.json")


def test_hf_directory_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hf_config(random_model(), "microsoft")))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path)
    assert_one_line_error(excinfo, tmp_path, "no .safetensors")


def test_not_a_gguf_file(tmp_path):
    (tmp_path / "model.gguf").write_text("this is text, not GGUF")
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "model.gguf")
    assert_one_line_error(excinfo, "model.gguf", "not a readable GGUF")


def test_hf_unknown_architecture(tmp_path):
    model = random_model()
    write_hf(tmp_path / "hf", model, config_overrides={"architectures": ["LlamaForCausalLM"]})
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "config.json", "LlamaForCausalLM", "not supported")


def test_gguf_unknown_architecture(tmp_path):
    model = random_model()
    path = write_model_gguf(tmp_path / "model.gguf", model, arch="llama")
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "'llama'", "not supported")


def test_hf_tensor_missing(tmp_path):
    model = random_model()
    tensors = hf_tensors(model, "microsoft")
    del tensors["model.layers.1.mlp.ffn_sub_norm.weight"]
    write_hf(tmp_path / "hf", model, tensors=tensors)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "hf", "model.layers.1.mlp.ffn_sub_norm.weight", "missing")


def test_hf_untied_head_missing(tmp_path):
    model = random_model()
    write_hf(tmp_path / "hf", model, config_overrides={"tie_word_embeddings": False})
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "lm_head.weight", "missing")


def test_gguf_tensor_missing(tmp_path):
    tensors = gguf_tensors(random_model())
    del tensors["blk.1.ffn_up.weight"]
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.1.ffn_up.weight", "missing")


def test_hf_tensor_wrong_shape(tmp_path):
    model = random_model()
    tensors = hf_tensors(model, "microsoft")
    name = "model.layers.0.self_attn.k_proj.weight"
    tensors[name] = tensors[name].T.copy()
    write_hf(tmp_path / "hf", model, tensors=tensors)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "model.safetensors", name, "(256, 128)", "(128, 256)")


def test_gguf_tensor_wrong_shape(tmp_path):
    tensors = gguf_tensors(random_model())
    tensors["blk.0.attn_q.weight"] = tensors["blk.0.attn_q.weight"][:128]
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.0.attn_q.weight", "(128, 256)",
                          "(256, 256)")


def test_gguf_f32_with_several_magnitudes_is_not_ternary(tmp_path):
    tensors = gguf_tensors(random_model())
    tensors["blk.1.ffn_down.weight"][3, :] *= 1.5
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.1.ffn_down.weight", "not ternary")


def test_gguf_tq2_blocks_with_different_scales_are_not_ternary(tmp_path):
    tensors = gguf_tensors(random_model())
    tensors["blk.0.ffn_gate.weight"][0, :256] *= 1.01    # one block, beyond fp16 rounding
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG), ternary_type=Q.TQ2_0)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.0.ffn_gate.weight", "not ternary")


def test_gguf_tq2_block_scale_infinite(tmp_path):
    tensors = gguf_tensors(random_model())
    raw = quantize(tensors["blk.0.attn_v.weight"].astype(np.float32), Q.TQ2_0)
    raw[0, 64:66] = np.array([np.inf], dtype=np.float16).view(np.uint8)  # block 0's fp16 d
    tensors["blk.0.attn_v.weight"] = (raw, Q.TQ2_0)
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.0.attn_v.weight", "NaN or infinite")


def test_gguf_f32_ternary_with_infinity(tmp_path):
    tensors = gguf_tensors(random_model())
    tensors["blk.1.attn_output.weight"][5, 7] = np.inf
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.1.attn_output.weight", "NaN or infinite")


def test_gguf_norm_with_nan(tmp_path):
    tensors = gguf_tensors(random_model())
    tensors["blk.0.ffn_norm.weight"][0] = np.nan
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.0.ffn_norm.weight", "NaN or infinite")


def test_gguf_scale_tensor_not_positive(tmp_path):
    tensors = gguf_tensors(random_model())
    tensors["blk.0.attn_k.scale"] = np.array([0.0], np.float32)
    path = write_gguf(tmp_path / "model.gguf", tensors, gguf_keys(CONFIG))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", "blk.0.attn_k.scale", "positive finite")


def test_hf_packed_weight_scale_infinite(tmp_path):
    model = random_model()
    tensors = hf_tensors(model, "microsoft", packed=True)
    tensors["model.layers.0.mlp.up_proj.weight_scale"] = np.array([np.inf], np.float32)
    write_hf(tmp_path / "hf", model, packed=True, tensors=tensors)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "model.safetensors",
                          "model.layers.0.mlp.up_proj.weight_scale", "positive finite")


def test_hf_packed_value_three_is_not_a_code(tmp_path):
    model = random_model()
    tensors = hf_tensors(model, "microsoft", packed=True)
    tensors["model.layers.1.self_attn.o_proj.weight"][2, 2] = 0b11
    write_hf(tmp_path / "hf", model, packed=True, tensors=tensors)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "model.layers.1.self_attn.o_proj.weight", "value 3")


def test_hf_latent_with_nan(tmp_path):
    model = random_model()
    tensors = hf_tensors(model, "microsoft")
    tensors["model.layers.0.self_attn.q_proj.weight"][1, 1] = np.nan
    write_hf(tmp_path / "hf", model, tensors=tensors)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "model.layers.0.self_attn.q_proj.weight", "NaN or infinite")


@pytest.mark.parametrize("overrides, fragment", [
    ({"hidden_size": None}, "missing key(s) hidden_size"),
    ({"num_key_value_heads": 3}, "multiple of kv_heads"),
    ({"intermediate_size": 0}, "ffn must be a positive integer"),
    ({"num_attention_heads": 3}, "not a multiple of num_attention_heads"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
    ({"rms_norm_eps": "small"}, "norm_eps must be a positive finite number"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 4.0}}, "RoPE scaling"),
])
def test_hf_bad_config(tmp_path, overrides, fragment):
    model = random_model()
    write_hf(tmp_path / "hf", model, tensors={})
    config = {**hf_config(model, "microsoft"), **overrides}
    config = {key: value for key, value in config.items() if value is not None}
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path / "hf")
    assert_one_line_error(excinfo, "config.json", fragment)


def test_hf_config_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(tmp_path)
    assert_one_line_error(excinfo, "config.json", "not valid JSON")


@pytest.mark.parametrize("key, value, fragment", [
    ("block_count", None, "key bitnet.block_count is missing"),
    ("attention.layer_norm_rms_epsilon", None, "missing"),
    ("attention.head_count", 3, "not a multiple of bitnet.attention.head_count"),
    ("attention.head_count_kv", 3, "multiple of kv_heads"),
    ("feed_forward_length", 0, "ffn must be a positive integer"),
])
def test_gguf_bad_config(tmp_path, key, value, fragment):
    keys = gguf_keys(CONFIG)
    if value is None:
        del keys[key]
    else:
        keys[key] = value
    path = write_gguf(tmp_path / "model.gguf", gguf_tensors(random_model()), keys)
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path)
    assert_one_line_error(excinfo, "model.gguf", fragment)


# -- I2_S bad input -------------------------------------------------------------------

def write_i2s_model(path, change):
    """The random ReLU^2 model as an I2_S file, after ``change(tensors)``."""
    tensors = i2s_tensors(random_model(RELU2))
    change(tensors)
    return write_gguf(path, tensors, gguf_keys(RELU2), "bitnet-b1.58")


def load_error(path, *fragments, **options):
    with pytest.raises(ModelFormatError) as excinfo:
        load_model(path, **options)
    assert_one_line_error(excinfo, path.name, *fragments)


@pytest.mark.parametrize("extra, message", [
    (-32, "takes 16416 bytes, but the next tensor starts 16384 bytes after it"),
    (16384, "holds 32800 bytes, but an I2_S tensor of 65536 values takes 65536 / 4 + 32 = "
            "16416")])
def test_i2s_tensor_of_the_wrong_size(tmp_path, extra, message):
    """Without its 32-byte trailer (a writer that forgot the scale) or with room for
    more than the trailer and its padding, the tensor is not an I2_S tensor."""
    def change(tensors):
        tensor = tensors["blk.0.attn_q.weight"]
        raw = tensor.raw[:extra] if extra < 0 else \
            np.concatenate([tensor.raw, np.zeros(extra, np.uint8)])
        tensors["blk.0.attn_q.weight"] = I2S(raw, tensor.shape)
    load_error(write_i2s_model(tmp_path / "size.gguf", change), "blk.0.attn_q.weight", message)


def test_i2s_code_three(tmp_path):
    def change(tensors):
        tensors["blk.1.ffn_up.weight"].raw[40] |= 0b11_00_00_00
    load_error(write_i2s_model(tmp_path / "three.gguf", change), "blk.1.ffn_up.weight",
               "I2_S code 3 (block 1)")


@pytest.mark.parametrize("scale", [np.nan, 0.0, -0.5])
def test_i2s_scale_not_positive(tmp_path, scale):
    def change(tensors):
        tensor = tensors["blk.0.ffn_down.weight"]
        tensor.raw[-32:-28] = np.array([scale], "<f4").view(np.uint8)
    load_error(write_i2s_model(tmp_path / "scale.gguf", change), "blk.0.ffn_down.weight",
               "expected a positive finite number")


def test_i2s_only_for_ternary_linears(tmp_path):
    def change(tensors):
        tensors["blk.0.ffn_norm.weight"] = I2S(np.zeros(256 // 4 + 32, np.uint8), (256,))
    load_error(write_i2s_model(tmp_path / "norm.gguf", change), "blk.0.ffn_norm.weight",
               "type I2_S, I2_S holds ternary linears only")


def test_i2s_values_not_whole_blocks():
    from tritium.host.importers.i2s import I2S_LAYOUTS, decode_i2s
    with pytest.raises(ModelFormatError) as excinfo:
        decode_i2s("t.gguf", "w", np.zeros(48 + 32, np.uint8), (3, 64), I2S_LAYOUTS["x86"])
    assert_one_line_error(excinfo, "t.gguf", "192 values", "x86 I2_S layout's 128-value "
                                                           "blocks")


def test_i2s_unknown_layout(tmp_path):
    from tritium.host.errors import InputError
    path = write_i2s_model(tmp_path / "m.gguf", lambda tensors: None)
    with pytest.raises(InputError, match="unknown I2_S layout 'riscv'"):
        load_model(path, i2s_layout="riscv")


# -- a GGUF with its tokenizer: run, end of sequence, and models without a tokenizer ------

def write_model_with_vocabulary(directory, vocabularies, **changes):
    """A bitnet GGUF whose metadata holds a Llama-3-style vocabulary (written as
    llama.cpp's converter does), alone in ``directory``; returns (path, the same
    vocabulary's tokenizer.json tokenizer, the model)."""
    from tritium.host.tokenizer import HFTokenizer
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "json").mkdir(exist_ok=True)
    reference = HFTokenizer(vocabularies.byte_level(directory / "json" / "tokenizer.json"))
    keys = vocabularies.metadata(directory / "json" / "tokenizer.json", "gpt2", "llama-bpe")
    keys.update({f"tokenizer.ggml.{key}": value for key, value in changes.items()})
    config = dataclasses.replace(CONFIG, vocab_size=reference.vocab_size)
    model = random_model(config)
    (directory / "gguf").mkdir(exist_ok=True)
    path = write_gguf(directory / "gguf" / "model.gguf", gguf_tensors(model), gguf_keys(config),
                      metadata=lambda writer: vocabularies.add(writer, keys))
    return path, reference, model


def run_json(capsys, *argv):
    from tritium.cli.testing import run_cli
    code, out, err = run_cli(capsys, "run", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_run_a_bitnet_gguf_with_its_tokenizer_in_metadata(tmp_path, capsys, gguf_vocabularies):
    """No other file: the prompt is split as the vocabulary's tokenizer.json splits it,
    and the text is the generated ids decoded."""
    path, reference, _ = write_model_with_vocabulary(tmp_path, gguf_vocabularies)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.gguf"]
    prompt = "hello wörld, 123 done"
    result = run_json(capsys, "--model", path, "--prompt", prompt, "-n", 6, "--ignore-eos")
    assert result["prompt_tokens"] == len(reference.encode(prompt))
    assert len(result["tokens"]) == 6 and result["stop"] == "max_tokens"
    assert result["text"] == reference.decode(result["tokens"])
    from tritium.cli.testing import run_cli
    code, out, _ = run_cli(capsys, "info", "--model", path, "--json")
    assert code == 0 and json.loads(out)["tokenizer"] == "GGUFTokenizer"


def test_run_stops_at_the_end_of_sequence_token(tmp_path, capsys, gguf_vocabularies):
    """A token of a free run, made the EOS token, ends the next run where it first comes
    (it is counted, not printed); --ignore-eos runs on."""
    from tritium.host.tokenizer import load_tokenizer
    path, reference, _ = write_model_with_vocabulary(tmp_path / "free", gguf_vocabularies)
    argv = ("--prompt", "Once upon", "-n", 8)
    free = run_json(capsys, "--model", path, *argv, "--ignore-eos")["tokens"]
    eos = free[max(free.index(token) for token in free)]      # the latest newcomer
    path, _, _ = write_model_with_vocabulary(tmp_path / "eos", gguf_vocabularies,
                                             eos_token_id=eos)
    eos_ids = load_tokenizer(path, read_model_config(path)).eos_ids
    assert eos in eos_ids
    end = next(i for i, token in enumerate(free) if token in eos_ids)
    stopped = run_json(capsys, "--model", path, *argv)
    assert stopped["tokens"] == free[:end + 1] and stopped["stop"] == "eos"
    assert stopped["text"] == reference.decode(free[:end])
    ignored = run_json(capsys, "--model", path, *argv, "--ignore-eos")
    assert ignored["tokens"] == free and ignored["stop"] == "max_tokens"


def test_run_stops_at_a_stop_string(tmp_path, capsys, gguf_vocabularies):
    """--stop: the text ends where the string begins; tokens stop once it is seen."""
    path, _, _ = write_model_with_vocabulary(tmp_path, gguf_vocabularies)
    argv = ("--model", path, "--prompt", "Once upon", "-n", 12, "--ignore-eos")
    free = run_json(capsys, *argv)
    stop = free["text"][len(free["text"]) // 3:][:3]
    assert stop.strip()
    result = run_json(capsys, *argv, "--stop", stop, "--stop", "\x00never")
    assert result["stop"] == "stop_string"
    assert result["text"] == free["text"][:free["text"].index(stop)]
    assert result["tokens"] == free["tokens"][:len(result["tokens"])]
    assert len(result["tokens"]) < 12


def test_a_bad_gguf_tokenizer_is_refused_before_the_weights_load(tmp_path, capsys,
                                                                 gguf_vocabularies, monkeypatch):
    from tritium.cli.testing import assert_one_line_error as cli_error
    path, _, _ = write_model_with_vocabulary(tmp_path, gguf_vocabularies, pre="qwen2")

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded before the tokenizer was checked")
    monkeypatch.setattr(importers, "load_model", refuse)
    cli_error(capsys, "run", "--model", path, "--prompt", "hi",
              match="byte-level pre-tokenizer 'qwen2' (tokenizer.ggml.pre) is not supported")


def test_info_and_eval_tokens_need_no_tokenizer(tmp_path, capsys):
    """A model with neither a tokenizer.json nor tokenizer metadata: info says so, eval
    --tokens computes its logits, run and eval --text are refused in one line."""
    from tritium.cli.testing import assert_one_line_error as cli_error, run_cli
    path = write_model_gguf(tmp_path / "bare.gguf", random_model())
    code, out, _ = run_cli(capsys, "info", "--model", path)
    assert code == 0 and "tokenizer" in out and "none found" in out
    code, out, _ = run_cli(capsys, "info", "--model", path, "--json")
    assert json.loads(out)["tokenizer"] is None
    code, out, _ = run_cli(capsys, "eval", "--model", path, "--tokens", "1,5,299", "--json")
    assert code == 0 and json.loads(out)["positions"] == 3
    cli_error(capsys, "run", "--model", path, "--prompt", "hi", match="no tokenizer")
    (tmp_path / "t.txt").write_text("some text")
    cli_error(capsys, "eval", "--model", path, "--text", tmp_path / "t.txt", match="no tokenizer")
