"""companion.data.vocab: CharTokenizer, WordTokenizer and Vocab (ids, special tokens, round trips, errors)."""

import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.data import BOS, EOS, PAD, UNK, CharTokenizer, Vocab, WordTokenizer

words = st.text(alphabet="abcdefghij", min_size=1, max_size=4)
token_lists = st.lists(st.lists(words, max_size=8), min_size=1, max_size=6)


# ---------------------------------------------------------------- tokenizers


def test_char_tokenizer_splits_into_characters():
    assert CharTokenizer().tokenize("hi!") == ["h", "i", "!"]
    assert CharTokenizer().tokenize("") == []
    assert CharTokenizer().detokenize(["h", "i"]) == "hi"


@given(st.text())
def test_char_tokenizer_round_trip_of_any_text(text):
    tokenizer = CharTokenizer()
    tokens = tokenizer.tokenize(text)
    assert len(tokens) == len(text)
    assert tokenizer.detokenize(tokens) == text


@pytest.mark.parametrize("tokenizer", [CharTokenizer(), WordTokenizer()])
@pytest.mark.parametrize("text", [["a", "b"], b"ab", None, 3])
def test_tokenizers_reject_non_text(tokenizer, text):
    with pytest.raises(TypeError, match=rf"^text must be a str, got {type(text).__name__}$"):
        tokenizer.tokenize(text)


def test_word_tokenizer_keeps_contractions_and_splits_punctuation():
    assert WordTokenizer().tokenize("Don't stop.") == ["don't", "stop", "."]
    assert WordTokenizer().tokenize("It’s 3 o’clock, Bob!") == ["it’s", "3", "o’clock", ",", "bob", "!"]


def test_word_tokenizer_can_keep_case():
    assert WordTokenizer(lowercase=False).tokenize("Hello World") == ["Hello", "World"]


def test_word_tokenizer_detokenize_reattaches_punctuation():
    tokenizer = WordTokenizer()
    text = "hello, world. (yes!) [a; b: c?] 50%"
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


@given(st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=5), min_size=1, max_size=10))
def test_word_tokenizer_round_trip_of_space_separated_words(word_list):
    tokenizer = WordTokenizer()
    text = " ".join(word_list)
    assert tokenizer.tokenize(text) == word_list
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


# ---------------------------------------------------------------- building a Vocab


def test_pad_is_zero_unk_is_one_then_specials_then_by_frequency():
    vocab = Vocab.build([["b", "a", "c"], ["c", "b", "c"]], specials=(BOS, EOS))
    assert vocab.id_to_token == [PAD, UNK, BOS, EOS, "c", "b", "a"]
    assert (vocab.pad_id, vocab.unk_id) == (0, 1)
    assert vocab.token_to_id == {token: index for index, token in enumerate(vocab.id_to_token)}


def test_ties_are_broken_alphabetically():
    assert Vocab.build([["z", "y", "x", "y"]]).id_to_token == [PAD, UNK, "y", "x", "z"]


@given(token_lists, st.randoms(use_true_random=False))
def test_table_does_not_depend_on_the_order_of_the_corpus(lists, rng):
    flat = [token for tokens in lists for token in tokens]
    shuffled = flat[:]
    rng.shuffle(shuffled)
    assert Vocab.build(lists).id_to_token == Vocab.build([shuffled]).id_to_token


def test_min_freq_drops_rare_tokens():
    vocab = Vocab.build([["a", "a", "b", "c", "c", "c"]], min_freq=2)
    assert vocab.id_to_token == [PAD, UNK, "c", "a"]
    assert "b" not in vocab


def test_max_size_caps_the_table_special_tokens_included():
    vocab = Vocab.build([list("aaabbc")], max_size=4, specials=(BOS,))
    assert vocab.id_to_token == [PAD, UNK, BOS, "a"]
    assert len(vocab) == 4


def test_specials_that_repeat_pad_or_unk_are_not_duplicated():
    assert Vocab.build([["a"]], specials=(PAD, BOS, UNK)).id_to_token == [PAD, UNK, BOS, "a"]


def test_corpus_tokens_that_look_special_are_not_duplicated():
    assert Vocab.build([[PAD, "a", UNK, BOS]], specials=(BOS,)).id_to_token == [PAD, UNK, BOS, "a"]


def test_build_accepts_a_generator():
    assert len(Vocab.build(list(sentence) for sentence in ["ab", "bc"])) == 5


def test_build_refuses_a_plain_string():
    with pytest.raises(TypeError, match=r"token_lists must be a list of token lists, got a str"):
        Vocab.build("hello world")


@pytest.mark.parametrize("min_freq", [0, -3])
def test_build_refuses_min_freq_below_one(min_freq):
    with pytest.raises(ValueError, match=rf"min_freq must be at least 1, got {min_freq}"):
        Vocab.build([["a"]], min_freq=min_freq)


def test_build_refuses_max_size_smaller_than_the_specials():
    with pytest.raises(ValueError, match=r"max_size must be at least 4 \(the special tokens\), got 3"):
        Vocab.build([["a"]], max_size=3, specials=(BOS, EOS))


def test_constructor_requires_pad_and_unk_first():
    with pytest.raises(ValueError, match=r"tokens must start with '<pad>' and '<unk>', got \['a', '<pad>'\]"):
        Vocab(["a", PAD, UNK])


def test_constructor_refuses_duplicates():
    with pytest.raises(ValueError, match=r"tokens must be unique, got duplicates \['a'\]"):
        Vocab([PAD, UNK, "a", "b", "a"])


def test_len_contains_and_repr():
    vocab = Vocab([PAD, UNK, "a", "b"])
    assert len(vocab) == 4
    assert "a" in vocab
    assert "z" not in vocab
    assert repr(vocab) == "Vocab(size=4, tokens=['<pad>', '<unk>', 'a', 'b', ...])"


# ---------------------------------------------------------------- encode / decode


def test_encode_maps_unknown_tokens_to_unk():
    vocab = Vocab.build([["a", "b"]])
    assert vocab.encode(["a", "zzz", "b", PAD]) == [vocab.token_to_id["a"], 1, vocab.token_to_id["b"], 0]


@given(token_lists, st.data())
def test_decode_encode_round_trip_for_tokens_in_the_vocabulary(lists, data):
    vocab = Vocab.build(lists, specials=(BOS, EOS))
    tokens = data.draw(st.lists(st.sampled_from(vocab.id_to_token), max_size=20))
    ids = vocab.encode(tokens)
    assert all(0 <= index < len(vocab) for index in ids)
    assert vocab.decode(ids) == tokens
    assert vocab.decode(torch.tensor(ids, dtype=torch.long)) == tokens


@given(token_lists, st.lists(st.text(alphabet="KLMNOP", min_size=1, max_size=3), max_size=10))
def test_tokens_outside_the_vocabulary_encode_to_unk(lists, unknown):
    vocab = Vocab.build(lists)
    assert vocab.encode(unknown) == [vocab.unk_id] * len(unknown)


def test_text_pipeline_of_the_module_docstring():
    text = "hello world, hi!"
    tokenizer = CharTokenizer()
    tokens = tokenizer.tokenize(text)
    vocab = Vocab.build([tokens])
    assert tokenizer.detokenize(vocab.decode(vocab.encode(tokens))) == text


def test_encode_refuses_a_string_of_several_characters():
    with pytest.raises(TypeError, match=r"tokens must be a sequence of tokens, got a str: tokenize the text first"):
        Vocab.build([["a"]]).encode("ab")


@pytest.mark.parametrize("text", ["a", "", "hello"])
def test_encode_refuses_any_str_even_a_single_character(text):
    with pytest.raises(TypeError, match="tokens must be a sequence of tokens, got a str"):
        Vocab.build([["a"]]).encode(text)


@pytest.mark.parametrize("ids", [[0, 5], [-1], [3]])
def test_decode_refuses_ids_outside_the_vocabulary(ids):
    vocab = Vocab([PAD, UNK, "a"])
    bad = [index for index in ids if not 0 <= index < 3]
    with pytest.raises(
        ValueError, match=rf"ids contains \[{', '.join(map(str, bad))}\] outside the vocabulary's range \[0, 3\)"
    ):
        vocab.decode(ids)


def test_decode_refuses_out_of_range_ids_in_a_tensor_too():
    with pytest.raises(ValueError, match=r"ids contains \[7\] outside"):
        Vocab([PAD, UNK, "a"]).decode(torch.tensor([0, 7]))


def test_decode_refuses_a_2d_tensor():
    with pytest.raises(ValueError, match=r"ids must be 1-dimensional \(time,\), got shape \(2, 3\)"):
        Vocab([PAD, UNK, "a"]).decode(torch.zeros(2, 3, dtype=torch.long))


def test_decode_of_an_empty_sequence_is_empty():
    assert Vocab([PAD, UNK]).decode([]) == []


def test_decode_refuses_float_ids_with_a_clear_error():
    with pytest.raises((TypeError, ValueError), match=r"ids"):
        Vocab([PAD, UNK, "a"]).decode(torch.tensor([0.0, 2.0]))


def test_decode_round_trip_with_random_ids():
    vocab = Vocab.build([list("abcdefgh")])
    rng = random.Random(0)
    ids = [rng.randrange(len(vocab)) for _ in range(50)]
    assert vocab.encode(vocab.decode(ids)) == ids
