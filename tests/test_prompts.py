"""Prompt sets: counts, labels, uniqueness, no France words where none belong, the split,
bad files, and that no evaluation prompt appears in the SAE training text."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from harness.core.config import load_profile
from harness.core.errors import ConfigError
from harness.world.prompts import concept_words_for, concept_words_in, discovery_mask, load_prompt_file, load_prompt_sets


@pytest.fixture(scope="module")
def sets():
    return load_prompt_sets(load_profile("smollm2-135m"))


def test_counts_and_facets(sets):
    assert len(sets.concept) == 200 and len(sets.neutral) == 200 and len(sets.near_miss) >= 100
    concept_facets = Counter(p.facet for p in sets.concept)
    assert len(concept_facets) >= 8 and min(concept_facets.values()) >= 20
    assert {p.facet for p in sets.near_miss} == set(concept_facets)  # the same facets, other countries
    assert len({p.country for p in sets.near_miss}) >= 4 and "France" not in {p.country for p in sets.near_miss}


def test_unique_ids_and_texts(sets):
    everything = sets.all()
    assert len({p.id for p in everything}) == len(everything)
    assert len({p.text.lower() for p in everything}) == len(everything)


def test_neutral_and_near_miss_have_no_france_words(sets):
    words = concept_words_for(load_profile("smollm2-135m"))
    assert "paris" in words and "de gaulle" in words  # the concept is data: the profile's list
    offenders = [(p.id, concept_words_in(p.text, words)) for p in [*sets.neutral, *sets.near_miss]
                 if concept_words_in(p.text, words)]
    assert offenders == []


def test_varied_length_and_form(sets):
    lengths = [len(p.text.split()) for p in sets.concept]
    assert min(lengths) <= 8 and max(lengths) >= 15
    assert sum(p.text.endswith("?") for p in sets.concept) >= 8  # questions as well as statements


def test_split_is_seeded_and_stratified(sets):
    mask = discovery_mask(sets.concept, seed=0)
    assert np.array_equal(mask, discovery_mask(sets.concept, seed=0))
    assert not np.array_equal(mask, discovery_mask(sets.concept, seed=1))
    for facet in {p.facet for p in sets.concept}:
        members = [m for m, p in zip(mask, sets.concept, strict=True) if p.facet == facet]
        assert abs(sum(members) - len(members) / 2) <= 0.5


def test_bad_prompt_files_are_named(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "a", "set": "concept"}) + "\n")
    with pytest.raises(ConfigError, match=r"mine.jsonl:1 has no \"text\" \(keys: \['id', 'set'\]\)"):
        load_prompt_file(path, "concept")
    path.write_text(json.dumps({"id": "a", "text": "x", "set": "neutral", "facet": "f"}) + "\n")
    with pytest.raises(ConfigError, match=r"mine.jsonl:1 has set 'neutral'; this file is for 'concept'"):
        load_prompt_file(path, "concept")
    line = json.dumps({"id": "a", "text": "Same", "set": "concept", "facet": "f"})
    path.write_text(line + "\n" + line.replace('"a"', '"b"') + "\n")
    with pytest.raises(ConfigError, match=r"mine.jsonl:2 repeats the text 'Same'"):
        load_prompt_file(path, "concept")
    with pytest.raises(ConfigError, match=r"unknown prompt set 'france'; valid choices: 'concept', 'near_miss', 'neutral'"):
        load_prompt_file(path, "france")
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompt_file(tmp_path / "none.jsonl", "concept")


def test_no_evaluation_prompt_in_training_text(sets):
    from harness.world.corpus import build_corpus

    paragraphs, info = build_corpus([])
    corpus = "\n".join(paragraphs).lower()
    leaked = [p.id for p in sets.all() if p.text.lower() in corpus]
    assert leaked == []
    assert info["paragraphs"] > 10_000


def test_a_truncated_prompt_warns_with_its_id():
    from harness.features.tables import warn_truncated
    from harness.world.prompts import Prompt

    class Words:  # a tokenizer that makes one token per word
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

    long = Prompt(id="p-long", text="word " * 80, set="concept", facet="x")
    short = Prompt(id="p-short", text="a short one", set="concept", facet="x")
    with pytest.warns(UserWarning, match=r"prompt 'p-long' has 81 tokens; only the first 64 are read"):
        warn_truncated(Words(), [long, short], 64)


def test_bring_your_own_prompts_in_plain_formats(tmp_path):
    """A .txt file (one prompt per line) or JSONL where only `text` is required; own fields kept."""
    txt = tmp_path / "mine.txt"
    txt.write_text("\ufeffWhat do people eat in Lyon?\n\nTell me about the Loire valley.\r\n")
    prompts = load_prompt_file(txt, "concept")
    assert [(p.id, p.text, p.set, p.facet) for p in prompts] == [
        ("concept:mine-1", "What do people eat in Lyon?", "concept", ""), ("concept:mine-3", "Tell me about the Loire valley.",
                                                                   "concept", "")]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(json.dumps({"text": "Bonjour", "source": "survey", "rating": 4}) + "\n")
    (prompt,) = load_prompt_file(jsonl, "concept")
    assert prompt.id == "concept:mine-1" and prompt.metadata == {"source": "survey", "rating": 4}


def test_concept_words_match_whole_words_and_capitalised_ones_only_as_written():
    assert concept_words_in("Have a nice day", ["Nice"]) == []
    assert concept_words_in("We flew to Nice in June.", ["Nice"]) == ["Nice"]
    assert concept_words_in("A PARIS skyline", ["paris"]) == ["paris"]  # lower case: any case
    assert concept_words_in("Parisian cafes", ["paris"]) == []  # whole words only
    assert concept_words_in("the non-french option", ["french"]) == []


def test_near_miss_txt_lines_can_name_their_country(tmp_path):
    path = tmp_path / "near.txt"
    path.write_text("[Spain] The Prado holds Velazquez.\n[ Italy ] Rome has seven hills.\nBerlin is large.\n")
    prompts = load_prompt_file(path, "near_miss")
    assert [(p.country, p.text) for p in prompts] == [("Spain", "The Prado holds Velazquez."),
                                                      ("Italy", "Rome has seven hills."), ("", "Berlin is large.")]
    concept = tmp_path / "concept.txt"
    concept.write_text("[Note] kept as text in other sets\n")
    assert load_prompt_file(concept, "concept")[0].text == "[Note] kept as text in other sets"
