"""The test tiers. ``pytest`` runs them all, the cocotb simulations on Verilator
included; no vendor tool or system package is needed.

0. **Model.** Golden model against the float reference, the packer's round trips,
   config validation, importers, tokenizers, the host driver on the golden transport:
   ``tests/sim``, ``tests/host``, ``tests/test_packaging.py`` (the installed package).
1. **amaranth.sim unit tests.** Each component against the golden model, with random
   gaps on ``valid`` and back-pressure on ``ready``: ``tests/hw``.
2. **cocotb on the generated Verilog (Verilator).** Larger configs, mid-stream reset:
   ``tests/cosim`` (the ``tb_*.py`` files are the cocotb modules the ``test_*.py`` files
   build and run).
3. **The host driver end to end over the sim transport.** The real ``Accelerator``
   runs prefill and decode on the simulated top:
   ``tests/cosim/test_accelerator_sim.py``, ``tests/cosim/test_top_sim.py``
   (the link alone), ``tests/cosim/test_board_sim.py`` (a board memory model, loaded
   through the backdoor), and ``tests/boards/test_ulx3s_serial.py`` (the ``serial:``
   transport on the ULX3S core).
4. **Boards.** Elaboration, generated files, reports and the simulated KV260 top for
   every board: ``tests/boards``. Real toolchain builds are marked ``synth``.

Markers. They are registered in ``pyproject.toml`` (``[tool.pytest.ini_options]
markers``), which runs with ``--strict-markers``:

- ``cosim``: cocotb on generated Verilog (tiers 2 and 3, and the KV260 top's testbench);
- ``synth``: runs an FPGA toolchain (Yosys, nextpnr); left out by default;
- ``slow``: long randomized runs; left out by default.

``pytest`` runs ``-m "not synth and not slow"``. ``pytest -m synth`` runs the builds,
``pytest -m cosim`` the simulations only, and ``pytest -m "not cosim"`` skips them.
Timing is never asserted in a test; benchmarks live in ``bench/``.

Fixtures stay in the test files that use them, except the few below that several files
share (test data that must not be written twice).
"""

import json

import pytest

# -- fixtures shared by several files -----------------------------------------------------

# The config.json of 1bitLLM's bitnet_b1_58-large (BitNet-0.7B), as published.
BITNET_LARGE_HF_CONFIG = {
    "architectures": ["BitnetForCausalLM"], "hidden_act": "silu", "hidden_size": 1536,
    "intermediate_size": 4096, "max_position_embeddings": 2048,
    "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "vocab_size": 32002}


@pytest.fixture
def bitnet_large_checkpoint():
    """``make(directory)``: a Hugging Face checkpoint directory holding only BitNet-0.7B's
    config.json (enough for what reads a model's shape); returns the directory."""
    def make(directory):
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(BITNET_LARGE_HF_CONFIG))
        return directory
    return make


# What every GGUF tokenizer test splits: accents, CJK, an emoji, runs of spaces, newlines
# and tabs, digits, contractions, punctuation.
_TEXTS = [
    "héllo wörld, 日本語 🎉 done",
    "  two leading spaces\n\nand newlines\tand\ttabs  ",
    "digits 1234567 and 3.14159, 42!",
    "It's CAPS'LL don't 'quote' (x+y)^2 <= z|w ~ $5",
    "trailing space ",
    "\n",
]
_TRAINING_TEXT = [
    "the quick brown fox jumps over the lazy dog", "hello world, hello there, well done",
    "numbers 0123456789 and 3.14", "日本のテキスト", "don't stop, it's fine; we'll see",
    "Once upon a time there was a little cat", "  indented\n\tcode(x) + y == z"] * 10


class GGUFVocabularies:
    """Real-shaped vocabularies as ``tokenizer.json`` files and as llama.cpp's converter
    writes them into GGUF metadata (``tokenizer.ggml.*``)."""

    TEXTS = _TEXTS
    SPECIALS_SPM = ["<unk>", "<s>", "</s>"]
    SPECIALS_LLAMA3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                       "<|eot_id|>"]

    @staticmethod
    def sentencepiece(path):
        """A Llama-2-style tokenizer.json, as transformers writes one for a SentencePiece
        BPE model: <unk> <s> </s>, then the 256 byte tokens <0x00>..<0xFF>, then pieces
        with ▁ for a space; byte fallback; a ▁ put in front by the normalizer."""
        from tokenizers import (AddedToken, Tokenizer, decoders, models, normalizers,
                                pre_tokenizers, processors, trainers)
        trainer_tokenizer = Tokenizer(models.BPE())
        trainer_tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        trainer_tokenizer.train_from_iterator(_TRAINING_TEXT, trainers.BpeTrainer(
            vocab_size=400, show_progress=False, initial_alphabet=list("abcdefghij▁")))
        trained = json.loads(trainer_tokenizer.to_str())["model"]
        pieces = sorted(trained["vocab"], key=trained["vocab"].get)
        tokens = GGUFVocabularies.SPECIALS_SPM + [f"<0x{b:02X}>" for b in range(256)] + pieces
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                  for m in trained["merges"]]
        tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                                         merges=merges, unk_token="<unk>", fuse_unk=True,
                                         byte_fallback=True))
        tokenizer.normalizer = trainer_tokenizer.normalizer
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "),
                                               decoders.ByteFallback(), decoders.Fuse(),
                                               decoders.Strip(" ", 1, 0)])
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                      for t in GGUFVocabularies.SPECIALS_SPM])
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A:0",
                                                                 special_tokens=[("<s>", 1)])
        tokenizer.save(str(path))
        return path

    @staticmethod
    def byte_level(path, style="llama3"):
        """A byte-level BPE tokenizer.json: ``llama3`` as Meta's Llama-3 (its split
        regex, merges ignored for whole tokens, special tokens after the base vocabulary,
        <|begin_of_text|> first) or ``gpt2`` (GPT-2's regex inside ByteLevel)."""
        from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                                pre_tokenizers, processors, trainers)
        if style == "llama3":
            pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| "
                       r"?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
            pre = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        else:
            pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer_tokenizer = Tokenizer(models.BPE())
        trainer_tokenizer.pre_tokenizer = pre
        trainer_tokenizer.train_from_iterator(_TRAINING_TEXT, trainers.BpeTrainer(
            vocab_size=420, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        trained = json.loads(trainer_tokenizer.to_str())["model"]
        tokenizer = Tokenizer(models.BPE(
            vocab=trained["vocab"],
            merges=[tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                    for m in trained["merges"]],
            ignore_merges=style == "llama3"))
        tokenizer.pre_tokenizer = pre
        tokenizer.decoder = decoders.ByteLevel()
        if style == "llama3":
            tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                          for t in GGUFVocabularies.SPECIALS_LLAMA3])
            tokenizer.post_processor = processors.TemplateProcessing(
                single="<|begin_of_text|> $A:0",
                special_tokens=[("<|begin_of_text|>",
                                 tokenizer.token_to_id("<|begin_of_text|>"))])
        tokenizer.save(str(path))
        return path

    @staticmethod
    def metadata(path, model: str, pre: str = None) -> dict:
        """The ``tokenizer.ggml.*`` keys llama.cpp's convert_hf_to_gguf.py writes for the
        tokenizer.json at ``path``: every id's token in order, its type (control for
        special added tokens, byte for <0xXX> in a SentencePiece vocabulary), and for
        ``llama`` the scores a SentencePiece BPE model gives its pieces (minus the rank:
        here the id, which grows with each merge), for ``gpt2`` the merges."""
        data = json.loads(path.read_text(encoding="utf-8"))
        vocab = dict(data["model"]["vocab"])
        special = {added["content"] for added in data["added_tokens"] if added["special"]}
        for added in data["added_tokens"]:
            vocab[added["content"]] = added["id"]
        tokens = sorted(vocab, key=vocab.get)
        assert [vocab[t] for t in tokens] == list(range(len(tokens)))

        def token_type(token):
            if token in special:
                return 2 if token == "<unk>" else 3
            return 6 if model == "llama" and token.startswith("<0x") else 1

        keys = {"tokenizer.ggml.model": model, "tokenizer.ggml.tokens": tokens,
                "tokenizer.ggml.token_type": [token_type(t) for t in tokens]}
        if model == "llama":
            keys["tokenizer.ggml.scores"] = [0.0 if token_type(t) != 1 else -float(i)
                                             for i, t in enumerate(tokens)]
            keys.update({"tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.bos_token_id": 1,
                         "tokenizer.ggml.eos_token_id": 2})
        else:
            keys["tokenizer.ggml.merges"] = [m if isinstance(m, str) else " ".join(m)
                                             for m in data["model"]["merges"]]
            keys["tokenizer.ggml.pre"] = pre
            keys["tokenizer.ggml.bos_token_id"] = vocab.get("<|begin_of_text|>")
            keys["tokenizer.ggml.eos_token_id"] = vocab.get("<|end_of_text|>")
        keys = {key: value for key, value in keys.items() if value is not None}
        keys["tokenizer.ggml.add_bos_token"] = "tokenizer.ggml.bos_token_id" in keys
        return keys

    @staticmethod
    def add(writer, keys: dict):
        """Write ``keys`` (as :meth:`metadata` gives them) with ``writer`` (a GGUFWriter),
        in the value types llama.cpp's converter uses."""
        from gguf import GGUFValueType
        for key, value in keys.items():
            if isinstance(value, list):
                kind = (GGUFValueType.FLOAT32 if key.endswith("scores") else GGUFValueType.INT32
                        if key.endswith("token_type") else GGUFValueType.STRING)
                writer.add_key_value(key, value, GGUFValueType.ARRAY, sub_type=kind)
            elif isinstance(value, bool):
                writer.add_bool(key, value)
            elif isinstance(value, int):
                writer.add_uint32(key, value)
            else:
                writer.add_string(key, value)

    @classmethod
    def write(cls, path, keys: dict):
        """A GGUF file holding ``keys`` and nothing else a model needs."""
        from gguf import GGUFWriter
        writer = GGUFWriter(str(path), "bitnet")
        cls.add(writer, keys)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path


@pytest.fixture
def gguf_vocabularies():
    """:class:`GGUFVocabularies`: tokenizer.json files and their GGUF metadata."""
    return GGUFVocabularies
