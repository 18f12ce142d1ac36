"""`discover`: anchors from the discovery half, and a failure that says why and what to do next."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.entry.cli import main
from harness.entry.discovery import discover
from tests import planted


def run_with(tables):
    run = planted.claims_run()
    run.__dict__["tables"] = tables
    return run


def test_discover_finds_the_planted_anchor_and_counts_what_it_ranked():
    found = discover(planted.claims_run())
    assert found["anchors"]["coarse"][0] == planted.ANCHOR
    counts = found["counts"]
    assert counts["candidates"] >= counts["beat_neutral"] >= counts["beat_both"] >= 1


def test_no_anchor_without_an_effect_names_the_best_candidate_and_what_to_do():
    tables = planted.tables(planted.prompt_sets(), effect=False)
    with pytest.raises(HarnessError, match="no coarse feature fires on >= 20%.*lower \\[discovery\\] min_fire_rate"):
        discover(run_with(tables))
    coarse = tables.pooled["coarse"].copy()
    coarse[:, 3] = np.where(np.random.default_rng(0).random(coarse.shape[0]) < 0.5, 2.0, 0.0)  # fires anywhere
    with pytest.raises(HarnessError) as err:
        discover(run_with(dataclasses.replace(tables, pooled={**tables.pooled, "coarse": coarse})))
    text = str(err.value)
    assert "none beats the neutral prompts" in text and "the best is coarse-3" in text
    assert "Add concept prompts" in text and "README: Anchors" in text and "run discover" not in text


def test_a_kind_feature_that_fires_on_the_near_miss_prompts_too_is_no_anchor():
    """The Italy case: features beat neutral but fire as much on other countries. Say so, with the closest."""
    sets = planted.prompt_sets()
    tables = planted.tables(sets)
    near = np.array([s == "near_miss" for s in tables.prompt_sets])
    concept = np.flatnonzero([s == "concept" for s in tables.prompt_sets])
    coarse = tables.pooled["coarse"].copy()
    coarse[near] = coarse[concept[: near.sum()]]  # every feature fires on the near-miss prompts as on the concept
    with pytest.raises(HarnessError) as err:
        discover(run_with(dataclasses.replace(tables, pooled={**tables.pooled, "coarse": coarse})))
    text = str(err.value)
    assert "beat the neutral prompts, none beats the near-miss prompts" in text
    assert "the closest is coarse-" in text and "encode the concept's kind" in text
    assert "Add near-miss prompts" in text and "pre-register anchors by hand from prior work" in text
    assert "on the discovery half (40 concept / 40 neutral / 20 near-miss prompts)" in text


def test_discover_refuses_to_rewrite_a_packaged_profiles_anchors(capsys, monkeypatch):
    monkeypatch.setattr("harness.entry.discovery.discover", lambda run: pytest.fail("discovery ran"))
    assert main(["discover", "--profile", "smollm2-135m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --overwrite to replace its anchors" in err[0]
