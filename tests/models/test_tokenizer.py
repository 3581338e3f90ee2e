"""Tokenizers: UTF-8 bytes with streaming, and a checkpoint's own tokenizer files through transformers."""
import json

import pytest

from dfx.errors import CheckpointError
from dfx.models.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer, tokenizer_from_json

TEXT = "def f(x):  # π ≈ 3.14 ✓ 🐍\n"


def stream(tok, ids):
    dec = tok.stream_decoder()
    pieces = [dec.push(i) for i in ids]
    return pieces, dec.flush()


def test_bytes_round_trip():
    t = ByteTokenizer()
    ids = t.encode(TEXT)
    assert ids == list(TEXT.encode("utf-8")) and t.decode(ids) == TEXT
    assert t.decode([0x66, 0xFF, 0x67]) == "f\ufffdg"          # invalid UTF-8 is replaced, never an exception


def test_bytes_streaming_holds_back_split_characters():
    t = ByteTokenizer()
    pieces, tail = stream(t, t.encode(TEXT))
    assert "".join(pieces) + tail == TEXT and tail == ""
    snake = t.encode("🐍")                                     # four bytes: nothing until the last one
    assert stream(t, snake) == (["", "", "", "🐍"], "")
    assert all("\ufffd" not in p for p in pieces)


def test_bytes_streaming_of_a_cut_character():
    t = ByteTokenizer()
    pieces, tail = stream(t, t.encode("ab✓")[:-1])             # the stream ends inside a character
    assert pieces == ["a", "b", "", ""] and tail == "\ufffd"


def make_hf_tokenizer(d, gpt2_files=False):
    """A tiny byte-level BPE trained offline on a few strings, saved as transformers saves tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["def main():", "return x + y", "import os", "π ≈ 3.14"] * 20,
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    if gpt2_files:                                             # vocab.json + merges.txt only, as old GPT-2 dirs
        from transformers import GPT2TokenizerFast
        tok.model.save(str(d))
        (d / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
        assert GPT2TokenizerFast(vocab_file=str(d / "vocab.json"), merges_file=str(d / "merges.txt"))
    else:
        fast.save_pretrained(d)
    return len(fast)


@pytest.mark.parametrize("gpt2_files", [False, True], ids=["tokenizer.json", "vocab+merges"])
def test_hf_tokenizer_files_are_picked_up(tmp_path, gpt2_files):
    make_hf_tokenizer(tmp_path, gpt2_files)
    assert {p.name for p in tmp_path.iterdir()} >= ({"vocab.json", "merges.txt"} if gpt2_files else {"tokenizer.json"})
    t = load_tokenizer(tmp_path, 512)
    assert isinstance(t, HFTokenizer)
    ids = t.encode("def main():")
    assert t.decode(ids) == "def main():" and len(ids) < len("def main():")
    pieces, tail = stream(t, t.encode(TEXT[:20]))
    assert "".join(pieces) + tail == TEXT[:20]


def test_tokenizer_larger_than_the_model(tmp_path):
    n = make_hf_tokenizer(tmp_path)
    with pytest.raises(CheckpointError, match=rf"has {n} tokens but the model only 100; accepted: a tokenizer no "
                                              r"larger than the model's vocab_size$"):
        load_tokenizer(tmp_path, 100)


def test_bytes_without_tokenizer_files(tmp_path):
    assert isinstance(load_tokenizer(tmp_path, 256), ByteTokenizer)
    assert isinstance(load_tokenizer(None, 256), ByteTokenizer)


def test_no_tokenizer_for_a_larger_vocabulary(tmp_path):
    with pytest.raises(CheckpointError, match=r"^no tokenizer files in \S+ \(tokenizer.json, or vocab.json \+ "
                                              r"merges.txt\), and a byte-level model needs vocab_size 256, not 1000$"):
        load_tokenizer(tmp_path, 1000)
    with pytest.raises(CheckpointError, match=r"^no tokenizer files given"):
        load_tokenizer(None, 50257)


def test_broken_tokenizer_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{ broken")
    with pytest.raises(CheckpointError, match=r"tokenizer files in \S+ cannot be loaded \("):
        load_tokenizer(tmp_path, 256)


@pytest.mark.parametrize("gpt2_files", [False, True], ids=["tokenizer.json", "vocab+merges"])
def test_tokenizer_json_in_memory_equals_the_directory(tmp_path, gpt2_files):
    """A program carries its tokenizer as one tokenizer.json and builds it in memory: the same ids and text as
    transformers' own loading from the checkpoint directory, and no file written."""
    make_hf_tokenizer(tmp_path, gpt2_files)
    from_dir = load_tokenizer(tmp_path, 512)
    before = set(tmp_path.iterdir())
    mem = tokenizer_from_json(from_dir.to_json(), 512)
    assert set(tmp_path.iterdir()) == before
    for text in (TEXT, "def main():\n    return x + y", "import os  π"):
        assert mem.encode(text) == from_dir.encode(text)
        assert mem.decode(mem.encode(text)) == from_dir.decode(from_dir.encode(text)) == text
    pieces, tail = stream(mem, mem.encode(TEXT))
    assert "".join(pieces) + tail == TEXT


def test_tokenizer_json_errors():
    with pytest.raises(CheckpointError, match=r"^the tokenizer in the program cannot be loaded \(\w+: "):
        tokenizer_from_json(b"{ broken", 512)
    assert isinstance(tokenizer_from_json(None, 256), ByteTokenizer)
    with pytest.raises(CheckpointError, match=r"^the program has no tokenizer, and a byte-level model needs "
                                              r"vocab_size 256, not 1000; recompile"):
        tokenizer_from_json(None, 1000)
