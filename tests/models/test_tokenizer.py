import pytest

from dfx.errors import CheckpointError
from dfx.models.tokenizer import ByteTokenizer, load_tokenizer


def test_bytes_roundtrip_and_streaming():
    t = ByteTokenizer()
    text = "def f(x):  # π ≈ 3.14 ✓\n"
    ids = t.encode(text)
    assert max(ids) < 256 and t.decode(ids) == text
    dec = t.stream_decoder()
    pieces = [dec.push(i) for i in ids]
    assert "".join(pieces) + dec.flush() == text
    assert "" in pieces                       # a multi-byte character was held back until complete


def test_hf_tokenizer_files_are_used(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["def main():", "return x + y", "import os"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(tmp_path)
    t = load_tokenizer(tmp_path, 300)
    ids = t.encode("def main():")
    assert t.decode(ids) == "def main():" and len(ids) < len("def main():")
    dec = t.stream_decoder()
    assert "".join(dec.push(i) for i in ids) + dec.flush() == "def main():"


def test_no_tokenizer_for_large_vocab(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer files.*needs vocab_size 256, not 1000"):
        load_tokenizer(tmp_path, 1000)
