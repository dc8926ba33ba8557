import numpy as np
import pytest

from training.tokenizer import OOV_ID, Tokenizer, lengths


def test_fit_encode_pads_at_end_and_maps_oov():
    tok = Tokenizer.fit(["red shirt", "red bucket", "red novel"], vocab_size=10, seq_len=4)
    assert tok.vocab[0] == "red"
    ids = tok.encode(["Red SHIRT unknownword", ""])
    assert ids.dtype == np.int32 and ids.shape == (2, 4)
    assert ids[0, 0] == 2 and ids[0, 2] == OOV_ID and ids[0, 3] == 0
    assert ids[1].tolist() == [OOV_ID, 0, 0, 0]  # an empty text is one OOV token
    assert lengths(ids).tolist() == [3, 1]


def test_keeps_the_first_tokens():
    tok = Tokenizer.fit(["a b c d e f"], vocab_size=10, seq_len=3)
    assert tok.tokens("a b c d e f") == ["a", "b", "c"]
    long_text = "title words " + "x " * 100000
    assert tok.tokens(long_text) == ["title", "words", "x"]


def test_vocab_is_capped_and_deterministic():
    texts = ["b a", "a c", "c b d"]
    t1, t2 = Tokenizer.fit(texts, 4, 5), Tokenizer.fit(list(reversed(texts)), 4, 5)
    assert t1.vocab == t2.vocab and len(t1.vocab) == 2 and t1.vocab_size == 4


def test_html_entities_and_unicode():
    tok = Tokenizer([], seq_len=8)
    assert tok.tokens("Pots &amp; Pans – Café_au lait 12kg") == ["pots", "pans", "café", "au", "lait", "12kg"]


def test_json_round_trip(tmp_path):
    tok = Tokenizer.fit(["alpha beta", "beta gamma"], 50, 6)
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    texts = ["alpha gamma delta", "beta"]
    assert np.array_equal(tok.encode(texts), again.encode(texts))
    assert again.seq_len == 6 and again.vocab == tok.vocab


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unsupported tokenizer format"):
        Tokenizer.from_dict({"format": "other", "vocab": [], "seq_len": 3})
