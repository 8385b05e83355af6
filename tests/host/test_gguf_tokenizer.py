"""The tokenizer in a GGUF's metadata (``tokenizer.ggml.*``): each kind, written as
llama.cpp's converter writes it, splits text into the same ids as the same vocabulary
loaded from its tokenizer.json; every kind of bad metadata is a one-line error."""

import pytest

from tritium.host.errors import ModelFormatError
from tritium.host.gguf_tokenizer import build_tokenizer
from tritium.host.importers.gguf_vocab import read_gguf_vocabulary
from tritium.host.tokenizer import (ByteTokenizer, GGUFTokenizer, HFTokenizer, find_tokenizer,
                                    load_tokenizer)
from tritium.hw.config import ModelConfig

# (tokenizer.json style, tokenizer.ggml.model, tokenizer.ggml.pre)
KINDS = {"sentencepiece": ("sentencepiece", "llama", None),
         "llama-bpe": ("llama3", "gpt2", "llama-bpe"),
         "gpt-2": ("gpt2", "gpt2", "gpt-2")}
SPECIAL_TEXT = "<|eot_id|>after a special<s> token</s>"


def fake_model(vocab_size: int):
    """load_tokenizer only reads the model's config."""
    return ModelConfig(name="m", vocab_size=vocab_size, hidden=64, layers=1, heads=2,
                       kv_heads=2, head_dim=32, ffn=96)


def tokenizer_json(vocabularies, directory, kind):
    style = KINDS[kind][0]
    path = directory / "tokenizer.json"
    if style == "sentencepiece":
        return vocabularies.sentencepiece(path)
    return vocabularies.byte_level(path, style)


def write_pair(vocabularies, tmp_path, kind, **changes):
    """(tokenizer.json in one directory, the GGUF of the same vocabulary in another),
    the GGUF's keys changed by ``changes`` (a value None removes the key)."""
    (tmp_path / "json").mkdir()
    (tmp_path / "gguf").mkdir()
    path = tokenizer_json(vocabularies, tmp_path / "json", kind)
    _, model, pre = KINDS[kind]
    keys = vocabularies.metadata(path, model, pre)
    for key, value in changes.items():
        keys.pop(f"tokenizer.ggml.{key}", None)
        if value is not None:
            keys[f"tokenizer.ggml.{key}"] = value
    return path, vocabularies.write(tmp_path / "gguf" / "model.gguf", keys)


def gguf_tokenizer(path):
    return GGUFTokenizer(path, read_gguf_vocabulary(path))


def one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# -- the same ids as tokenizer.json -----------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_gguf_vocabulary_splits_as_its_tokenizer_json(tmp_path, gguf_vocabularies, kind):
    reference_path, gguf_path = write_pair(gguf_vocabularies, tmp_path, kind)
    reference, tokenizer = HFTokenizer(reference_path), gguf_tokenizer(gguf_path)
    assert tokenizer.vocab_size == reference.vocab_size
    for text in gguf_vocabularies.TEXTS + [SPECIAL_TEXT]:
        ids = tokenizer.encode(text)
        assert ids == reference.encode(text), text
        assert tokenizer.decode(ids) == reference.decode(ids)
        decoder = tokenizer.stream_decoder()
        streamed = "".join(decoder.push(i) for i in ids) + decoder.flush()
        assert streamed == reference.decode(ids)


def test_the_texts_need_merges_bytes_and_specials(tmp_path, gguf_vocabularies):
    """The comparison above means something: the texts split into many pieces, some of
    them byte tokens (SentencePiece) and special tokens, and BOS comes first."""
    _, gguf_path = write_pair(gguf_vocabularies, tmp_path, "sentencepiece")
    tokenizer = gguf_tokenizer(gguf_path)
    ids = tokenizer.encode(gguf_vocabularies.TEXTS[0])
    assert ids[0] == 1 and len(ids) > 10
    assert any(3 <= i < 259 for i in ids)                       # <0xXX> byte fallback
    assert {1, 2} <= set(tokenizer.encode(SPECIAL_TEXT, add_special_tokens=False))


@pytest.mark.parametrize("kind, change", [
    ("llama-bpe", {"pre": "gpt-2"}),                            # another split
    ("sentencepiece", {"scores": "reversed"}),                  # merges in another order
])
def test_another_pre_or_score_order_splits_otherwise(tmp_path, gguf_vocabularies, kind,
                                                     change):
    if change.get("scores") == "reversed":
        (tmp_path / "probe").mkdir()
        path = tokenizer_json(gguf_vocabularies, tmp_path / "probe", kind)
        scores = gguf_vocabularies.metadata(path, "llama")["tokenizer.ggml.scores"]
        change = {"scores": [-s for s in scores]}
    reference_path, gguf_path = write_pair(gguf_vocabularies, tmp_path, kind, **change)
    reference, tokenizer = HFTokenizer(reference_path), gguf_tokenizer(gguf_path)
    assert any(tokenizer.encode(text) != reference.encode(text)
               for text in gguf_vocabularies.TEXTS)


def test_default_pre_splits_as_llama_cpp(tmp_path, gguf_vocabularies):
    """llama.cpp's "default" applies four expressions in turn: punctuation runs, GPT-2's
    expression, digit runs, then groups of three digits."""
    _, gguf_path = write_pair(gguf_vocabularies, tmp_path, "gpt-2", pre="default")
    tokenizer = build_tokenizer(read_gguf_vocabulary(gguf_path))
    pieces = [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str("Hi, it's 12345 $x!")]
    assert pieces == ["Hi", ",", "Ġit", "'", "s", "Ġ", "123", "45", "Ġ", "$", "x", "!"]


def test_missing_pre_is_default(tmp_path, gguf_vocabularies):
    """Without tokenizer.ggml.pre llama.cpp uses "default"."""
    _, missing = write_pair(gguf_vocabularies, tmp_path, "gpt-2", pre=None)
    (tmp_path / "default").mkdir()
    _, default = write_pair(gguf_vocabularies, tmp_path / "default", "gpt-2", pre="default")
    for text in gguf_vocabularies.TEXTS:
        assert gguf_tokenizer(missing).encode(text) == gguf_tokenizer(default).encode(text)


# -- end of generation, BOS, and which tokenizer is found ---------------------------------

def test_end_of_generation_ids(tmp_path, gguf_vocabularies):
    """EOS from the metadata, and like llama.cpp the tokens named as an end of turn."""
    reference_path, gguf_path = write_pair(gguf_vocabularies, tmp_path, "llama-bpe")
    reference = HFTokenizer(reference_path)
    tokenizer = gguf_tokenizer(gguf_path)
    expected = {reference._tokenizer.token_to_id(t) for t in ("<|end_of_text|>", "<|eot_id|>")}
    assert tokenizer.eos_ids == expected
    assert tokenizer.encode("hi")[0] == reference._tokenizer.token_to_id("<|begin_of_text|>")


def test_add_bos_false_and_add_eos(tmp_path, gguf_vocabularies):
    _, gguf_path = write_pair(gguf_vocabularies, tmp_path, "sentencepiece",
                              add_bos_token=False, add_eos_token=True)
    ids = gguf_tokenizer(gguf_path).encode("hello")
    assert ids[0] != 1 and ids[-1] == 2


def test_load_tokenizer_finds_the_gguf_vocabulary(tmp_path, gguf_vocabularies):
    _, gguf_path = write_pair(gguf_vocabularies, tmp_path, "llama-bpe")
    tokenizer = load_tokenizer(gguf_path, fake_model(512))
    assert isinstance(tokenizer, GGUFTokenizer)
    text = gguf_vocabularies.TEXTS[0]
    assert tokenizer.encode(text) == gguf_tokenizer(gguf_path).encode(text)


def test_tokenizer_json_beside_the_gguf_wins(tmp_path, gguf_vocabularies):
    """A tokenizer.json next to the file is used; the GGUF still says what ends a text."""
    reference_path, gguf_path = write_pair(gguf_vocabularies, tmp_path, "llama-bpe")
    gguf_vocabularies.sentencepiece(gguf_path.parent / "tokenizer.json")
    tokenizer = load_tokenizer(gguf_path, fake_model(512))
    assert isinstance(tokenizer, HFTokenizer) and not isinstance(tokenizer, GGUFTokenizer)
    assert tokenizer.path == gguf_path.parent / "tokenizer.json"
    assert tokenizer.eos_ids == gguf_tokenizer(gguf_path).eos_ids


@pytest.mark.parametrize("model", [None, "no_vocab"])
def test_gguf_without_a_vocabulary(tmp_path, gguf_vocabularies, model):
    keys = {} if model is None else {"tokenizer.ggml.model": model}
    path = gguf_vocabularies.write(tmp_path / "m.gguf", keys)
    assert read_gguf_vocabulary(path) is None
    assert find_tokenizer(path, fake_model(300)) is None
    assert isinstance(find_tokenizer(path, fake_model(256)), ByteTokenizer)
    with pytest.raises(ModelFormatError) as excinfo:
        load_tokenizer(path, fake_model(300))
    one_line_error(excinfo, "no tokenizer", "the GGUF holds no tokenizer.ggml.* metadata")


def test_hf_eos_ids_from_generation_config(tmp_path, gguf_vocabularies):
    path = gguf_vocabularies.byte_level(tmp_path / "tokenizer.json")
    (tmp_path / "config.json").write_text('{"eos_token_id": 5}')
    assert HFTokenizer(path).eos_ids == {5}
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": [7, 9]}')
    assert HFTokenizer(path).eos_ids == {7, 9}
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": "x"}')
    with pytest.raises(ModelFormatError) as excinfo:
        HFTokenizer(path)
    one_line_error(excinfo, "generation_config.json", "eos_token_id must be a token id")


# -- bad metadata ---------------------------------------------------------------------------

BAD = [
    ("sentencepiece", {"model": "bert"}, "tokenizer model 'bert' (tokenizer.ggml.model) is "
                                         "not supported"),
    ("llama-bpe", {"pre": "qwen2"}, "byte-level pre-tokenizer 'qwen2' (tokenizer.ggml.pre) "
                                    "is not supported"),
    ("sentencepiece", {"tokens": None}, "the tokenizer has no tokenizer.ggml.tokens"),
    ("sentencepiece", {"tokens": "abc"}, "tokenizer.ggml.tokens is not an array of strings"),
    ("sentencepiece", {"scores": None}, "the tokenizer has no tokenizer.ggml.scores"),
    ("sentencepiece", {"scores": [0.0] * 3}, "tokenizer.ggml.scores has 3 entries, but "
                                             "tokenizer.ggml.tokens has 451"),
    ("llama-bpe", {"token_type": [1] * 5}, "tokenizer.ggml.token_type has 5 entries"),
    ("llama-bpe", {"merges": None}, "the tokenizer has no tokenizer.ggml.merges"),
    ("llama-bpe", {"merges": ["h e", "he llo"]}, "tokenizer.ggml.merges item 1 ('he llo') "
                                                 "needs the token 'llo'"),
    ("llama-bpe", {"merges": ["abc"]}, "tokenizer.ggml.merges item 0 ('abc') is not two "
                                       "tokens"),
    ("sentencepiece", {"eos_token_id": 9999}, "tokenizer.ggml.eos_token_id is 9999, not one "
                                              "of the 451 tokens"),
    ("sentencepiece", {"add_bos_token": "yes"}, "tokenizer.ggml.add_bos_token is not a "
                                                "boolean"),
]


@pytest.mark.parametrize("kind, change, message", BAD,
                         ids=[f"{k}-{next(iter(c))}" for k, c, _ in BAD])
def test_bad_metadata(tmp_path, gguf_vocabularies, kind, change, message):
    _, gguf_path = write_pair(gguf_vocabularies, tmp_path, kind, **change)
    with pytest.raises(ModelFormatError) as excinfo:
        load_tokenizer(gguf_path, fake_model(512))
    one_line_error(excinfo, str(gguf_path), message)


def test_bad_token_types(tmp_path, gguf_vocabularies):
    (tmp_path / "probe").mkdir()
    path = tokenizer_json(gguf_vocabularies, tmp_path / "probe", "sentencepiece")
    token_types = gguf_vocabularies.metadata(path, "llama")["tokenizer.ggml.token_type"]
    token_types[7] = 9
    _, gguf_path = write_pair(gguf_vocabularies, tmp_path, "sentencepiece", token_type=token_types)
    with pytest.raises(ModelFormatError) as excinfo:
        read_gguf_vocabulary(gguf_path)
    one_line_error(excinfo, "token_type of token 7 is 9, not a token type")


def test_duplicate_token(tmp_path, gguf_vocabularies):
    (tmp_path / "probe").mkdir()
    path = tokenizer_json(gguf_vocabularies, tmp_path / "probe", "llama-bpe")
    tokens = gguf_vocabularies.metadata(path, "gpt2", "llama-bpe")["tokenizer.ggml.tokens"]
    tokens[300] = tokens[100]
    _, gguf_path = write_pair(gguf_vocabularies, tmp_path, "llama-bpe", tokens=tokens)
    with pytest.raises(ModelFormatError) as excinfo:
        read_gguf_vocabulary(gguf_path)
    one_line_error(excinfo, f"lists {tokens[100]!r} twice (ids 100 and 300)")
