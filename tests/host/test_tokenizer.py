"""Tokenizers: the byte tokenizer, tokenizer.json through ``tokenizers``, streaming
decode that never splits a character, and how ``load_tokenizer`` picks one."""

import types

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tritium.host.errors import InputError, ModelFormatError
from tritium.host.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer
from tritium.hw.config import MODEL_PRESETS, ModelConfig

TEXT = "héllo wörld, 日本語 🎉 done"
TRAINING_TEXT = ["hello world, the quick brown fox", "héllo wörld", "日本語のテキスト",
                 "emoji 🎉 party", "done and dusted"] * 20


def fake_model(vocab_size: int):
    """load_tokenizer only reads the model's config."""
    config = ModelConfig(name="m", vocab_size=vocab_size, hidden=64, layers=1, heads=2,
                         kv_heads=2, head_dim=32, ffn=96)
    return types.SimpleNamespace(config=config)


def train_tokenizer(path, kind="byte-level", vocab_size=300):
    """A small BPE tokenizer.json: byte-level (GPT-2 style) or Metaspace (SentencePiece style).

    The vocabulary is too small to hold every multi-byte character as one token, so
    byte-level tokens end inside characters, which streaming must handle.
    """
    if kind == "byte-level":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        alphabet = sorted(set("".join(TRAINING_TEXT + [TEXT]).replace(" ", "▁")))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet,
                                  special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    tokenizer.save(str(path))
    return path


def stream(tokenizer, ids) -> list:
    decoder = tokenizer.stream_decoder()
    chunks = [decoder.push(token_id) for token_id in ids]
    return chunks + [decoder.flush()]


# -- ByteTokenizer --------------------------------------------------------------------

def test_byte_tokenizer_round_trip():
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(TEXT)
    assert ids == list(TEXT.encode("utf-8"))
    assert tokenizer.decode(ids) == TEXT
    assert tokenizer.vocab_size == 256


def test_byte_tokenizer_decodes_invalid_utf8_with_replacement():
    assert ByteTokenizer().decode([0x61, 0xFF, 0x62]) == "a\ufffdb"


def test_byte_tokenizer_rejects_ids_outside_bytes():
    with pytest.raises(InputError, match="256"):
        ByteTokenizer().decode([65, 256])


def test_byte_stream_never_splits_a_character():
    tokenizer = ByteTokenizer()
    chunks = stream(tokenizer, tokenizer.encode(TEXT))
    assert "".join(chunks) == TEXT
    assert not any("\ufffd" in chunk for chunk in chunks)
    # "日" is three bytes: nothing for the first two, the character on the third.
    japanese = stream(tokenizer, "日".encode("utf-8"))
    assert japanese == ["", "", "日", ""]


def test_byte_stream_flush_emits_an_unfinished_character_as_replacement():
    decoder = ByteTokenizer().stream_decoder()
    assert [decoder.push(b) for b in "日".encode("utf-8")[:2]] == ["", ""]
    assert decoder.flush() == "\ufffd"
    assert decoder.push(ord("a")) == "a"


def test_byte_stream_invalid_byte_is_emitted_with_the_next_token():
    decoder = ByteTokenizer().stream_decoder()
    assert [decoder.push(b) for b in b"a\xffb"] == ["a", "", "\ufffdb"]


# -- HFTokenizer ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["byte-level", "metaspace"])
def test_hf_tokenizer_round_trip_and_stream(tmp_path, kind):
    tokenizer = HFTokenizer(train_tokenizer(tmp_path / "tokenizer.json", kind))
    ids = tokenizer.encode(TEXT)
    assert tokenizer.decode(ids) == TEXT
    chunks = stream(tokenizer, ids)
    assert "".join(chunks) == TEXT
    assert not any("\ufffd" in chunk for chunk in chunks)


def test_hf_byte_level_tokens_do_end_inside_characters(tmp_path):
    """The streaming test above is meaningful: some tokens hold part of a character."""
    tokenizer = HFTokenizer(train_tokenizer(tmp_path / "tokenizer.json"))
    assert any("\ufffd" in tokenizer.decode([i]) for i in tokenizer.encode(TEXT))


def test_hf_tokenizer_vocab_size_counts_added_tokens(tmp_path):
    tokenizer = HFTokenizer(train_tokenizer(tmp_path / "tokenizer.json", vocab_size=300))
    assert tokenizer.vocab_size == 300


def test_hf_tokenizer_rejects_ids_outside_vocab(tmp_path):
    tokenizer = HFTokenizer(train_tokenizer(tmp_path / "tokenizer.json"))
    with pytest.raises(InputError, match="outside"):
        tokenizer.decode([1, 300])


def test_hf_tokenizer_unreadable_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(ModelFormatError) as excinfo:
        HFTokenizer(tmp_path / "tokenizer.json")
    assert "tokenizer.json" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


# -- load_tokenizer -------------------------------------------------------------------

def test_tiny_uses_bytes():
    model = types.SimpleNamespace(config=MODEL_PRESETS["tiny"])
    assert isinstance(load_tokenizer("tiny", model), ByteTokenizer)


def test_byte_vocabulary_model_uses_bytes_without_tokenizer_json(tmp_path):
    (tmp_path / "model.npz").write_bytes(b"")
    assert isinstance(load_tokenizer(tmp_path / "model.npz", fake_model(256)), ByteTokenizer)


@pytest.mark.parametrize("source", [".", "model.gguf", "tokenizer.json"])
def test_tokenizer_json_in_the_directory_or_next_to_the_file(tmp_path, source,
                                                             gguf_vocabularies):
    train_tokenizer(tmp_path / "tokenizer.json")
    gguf_vocabularies.write(tmp_path / "model.gguf", {})      # no vocabulary of its own
    tokenizer = load_tokenizer(tmp_path / source, fake_model(320))
    assert isinstance(tokenizer, HFTokenizer)
    assert tokenizer.path == tmp_path / "tokenizer.json"


def test_missing_tokenizer_names_what_is_missing(tmp_path):
    with pytest.raises(ModelFormatError) as excinfo:
        load_tokenizer(tmp_path, fake_model(300))
    message = str(excinfo.value)
    assert "tokenizer.json" in message and "is missing" in message and "\n" not in message


def test_nonexistent_source(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        load_tokenizer(tmp_path / "nowhere", fake_model(300))


def test_tokenizer_larger_than_model_vocabulary(tmp_path):
    train_tokenizer(tmp_path / "tokenizer.json", vocab_size=300)
    with pytest.raises(ModelFormatError, match="300 tokens, more than the model's "
                                               "vocabulary of 280"):
        load_tokenizer(tmp_path, fake_model(280))


def test_byte_tokenizer_larger_than_model_vocabulary():
    with pytest.raises(ModelFormatError, match="256 tokens"):
        load_tokenizer("tiny", fake_model(200))
