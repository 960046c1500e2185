"""Collapse detection on text Gemma 3 270M really generated (greedy, 80 tokens) in its F16, Q2_K and Q1_0 forms.

The texts below were produced by llama-completion on the real model; the
generation validator runs the same analysis on fresh output.
"""

from __future__ import annotations

import pytest

from gl_plugins.validate.collapse import diagnose, find_loop, is_word, word_share

# F16 base, "The history of the printing press begins": ordinary prose that repeats a phrase but does not loop
PROSE = (" with the invention of the printing press in 1450. The printing press is a device that allows the production "
         "of books, newspapers, and other printed materials. It was invented by Johannes Gutenberg in the 14th "
         "century. The printing press was a mechanical device that allowed for the production of books, newspapers, "
         "and other printed materials. It was a very important invention in the history of\n\n")
# stock Q2_K, "Once upon a time, in a small village by the sea,": an n-gram loop to the token limit
NGRAM_LOOP = " a small village, with the name of the village," + " the village," * 23 + "\n\n"
# stock Q2_K, "Water boils at a lower temperature at high altitude because": one character to the limit
DIGIT_LOOP = (" the water is warmer.\n\nThe temperature of the water at the top of the tower is 1"
              + "0" * 60 + "\n\n")
# Q1_0 everywhere, "Once upon a time, in a small village by the sea,": non-words
GARBLED = (" Northrop appeilityighton lysvers ассоnaph lys back sink ä lysناء Volga érté sureties,’ Johnstone back "
           "Penguin ért Departgraph tocarLG Θgraph DekorEQgraph Dekor Leinsterлық テーブル element Fos menjadiSUMMARY "
           "ля Θ Θ bereit’ lys Θ State lys Pergamon Θ USS Dasッツ rezerv USS Θ Buckingham GUS –还得 Θ Callingsof’ "
           "Gut een off’’’ Θ ΘPPT super’Baltimore lys – görüş\n\n")
# stock Q4_K_M, "Water boils …": a sentence loop to the limit
SENTENCE_LOOP = (" of the higher pressure. Water boils at a lower temperature at high altitude because"
                 + " of the higher pressure. Water boils at a lower temperature at high altitude because" * 4)


def test_ordinary_prose_is_not_a_collapse():
    assert diagnose(PROSE) is None
    share, n = word_share(PROSE)
    assert share == 1.0 and n == 65  # "1450." and "14th" are numbers, "Gutenberg" a word


def test_ngram_loop_names_its_unit_and_shows_it():
    c = diagnose(NGRAM_LOOP, hit_limit=True)
    assert c.kind == "loop" and c.figures["period_chars"] == 13
    assert c.detail.startswith("'the village,' repeats 24.0 times to the token limit")
    assert c.excerpt.count("the village,") >= 10


def test_a_digit_running_to_the_limit_is_a_loop():
    loop = find_loop(DIGIT_LOOP)
    assert loop.unit == "0" and loop.repeats >= 59


def test_a_sentence_loop_starts_at_the_sentence():
    c = diagnose(SENTENCE_LOOP, hit_limit=True)
    assert c.kind == "loop"
    assert c.detail.startswith("'Water boils at a lower temperature at high altitude because of the higher "
                               "pressure.' repeats")


def test_a_repetition_the_model_ended_itself_is_not_a_loop():
    assert diagnose(SENTENCE_LOOP, hit_limit=False) is None


def test_garbled_output_is_mostly_non_words():
    c = diagnose(GARBLED)
    assert c.kind == "non-words"
    assert c.detail == "only 55% of 55 tokens are words (at least 85% expected)"


def test_empty_output():
    c = diagnose(" \n\n ")
    assert (c.kind, c.detail) == ("empty", "the model generated nothing")


@pytest.mark.parametrize("token, word", [
    ("printing", True), ("Gutenberg,", True), ("NASA", True), ("don’t", True), ("well-known", True),
    ("1450.", True), ("14th", True), ("(1300s)", True),
    ("JeromeAu", False), ("lysناء", False), ("Θ", False), ("’’", False), ("Wire</strong>", False),
])
def test_what_counts_as_a_word(token, word):
    assert is_word(token) is word
