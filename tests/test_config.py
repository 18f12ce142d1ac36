"""Profiles: both load, and every bad value gets one clear error naming it and the choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.config import available_profiles, load_profile, with_overrides
from harness.core.errors import ConfigError
from harness.core.paths import FIXTURES_DIR

EMBEDDED = Path(__file__).resolve().parent.parent / "fixtures" / "profiles" / "smollm2-135m.toml"
PROMPTS = Path(__file__).resolve().parent.parent / "fixtures" / "prompts"


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(text.replace('"../', f'"{FIXTURES_DIR}/'))  # a copy elsewhere keeps the embedded files
    return path


def test_both_profiles_load():
    assert {"smollm2-135m", "gemma-2-2b"} <= set(available_profiles())
    smol = load_profile("smollm2-135m")
    assert smol.model.hook == "blocks.14.hook_resid_post" and smol.model.layer == 14
    assert (smol.saes["coarse"].d_sae, smol.saes["fine"].d_sae) == (2048, 16384)
    assert smol.saes["fine"].d_sae // smol.saes["coarse"].d_sae >= 8
    gemma = load_profile("gemma-2-2b")
    assert gemma.model.hook == "blocks.12.hook_resid_post"
    assert gemma.anchors.coarse == (3999, 11333, 9473) and gemma.anchors.fine == (249284, 86473, 243533)


def test_hook_depth_matches_the_seed():
    """Layer 14 of 30 sits at the relative depth of Gemma's layer 12 of 26 (within one layer)."""
    smol, gemma = load_profile("smollm2-135m"), load_profile("gemma-2-2b")
    assert abs(smol.model.layer / smol.model.n_layers - gemma.model.layer / gemma.model.n_layers) < 1 / 30


def test_unknown_profile_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown profile 'gemma-3'; valid choices: .*'gemma-2-2b'.*'smollm2-135m'"):
        load_profile("gemma-3")


def test_missing_profile_file():
    with pytest.raises(ConfigError, match=r"profile file '/nope/x.toml' does not exist"):
        load_profile("/nope/x.toml")


def test_unknown_key_is_named(tmp_path):
    text = EMBEDDED.read_text().replace('dtype = "float32"', 'dtype = "float32"\nlayers = 3', 1)
    with pytest.raises(ConfigError, match=r"unknown key in model 'layers'; valid choices: .*'hook'"):
        load_profile(str(write_profile(tmp_path, text)))


def test_bad_hook_is_named(tmp_path):
    text = EMBEDDED.read_text().replace("blocks.14.hook_resid_post", "blocks.14.resid")
    with pytest.raises(ConfigError, match=r"model.hook 'blocks.14.resid' is not a residual-stream hook name"):
        load_profile(str(write_profile(tmp_path, text)))


def test_hook_layer_out_of_range(tmp_path):
    text = EMBEDDED.read_text().replace("blocks.14.hook_resid_post", "blocks.30.hook_resid_post")
    with pytest.raises(ConfigError, match=r"names layer 30; valid layers: 0..29"):
        load_profile(str(write_profile(tmp_path, text)))


def test_bad_pooling_lists_choices(tmp_path):
    text = EMBEDDED.read_text().replace('pooling = "max"', 'pooling = "median"')
    with pytest.raises(ConfigError, match=r"unknown analysis.pooling 'median'; valid choices: 'max', 'mean'"):
        load_profile(str(write_profile(tmp_path, text)))


def test_unknown_claim_family_and_parameter(tmp_path):
    """A family no module has registered yet may be a researcher's (registered at collection, where the
    plugin checks it); checked against the registry it is one error naming the registered families."""
    bad_family = EMBEDDED.read_text().replace('family = "go_gate"', 'family = "vibes"')
    profile = load_profile(str(write_profile(tmp_path, bad_family)), require_anchors=False)
    vibes = [c for c in profile.claims if c.family == "vibes"][0]
    assert vibes.origin.endswith("custom.toml: claims[0]")
    with pytest.raises(ConfigError, match=r"unknown claim family 'vibes'; valid choices: .*'selectivity'"):
        vibes.check()
    with pytest.raises(ConfigError, match=r"unknown claim family 'Vibes!'"):
        load_profile(str(write_profile(tmp_path, EMBEDDED.read_text().replace('family = "go_gate"',
                                                                              'family = "Vibes!"'))))
    bad_param = EMBEDDED.read_text().replace("min_sub_features = 3", "min_subfeatures = 3")
    with pytest.raises(ConfigError, match=r"claim 'go_gate\[go\]': unknown parameter 'min_subfeatures' of family "
                                          r"'go_gate'; valid: against: .*min_sub_features: an integer >= 1 \(default 3\)"):
        load_profile(str(write_profile(tmp_path, bad_param)))


def test_missing_claim_parameter(tmp_path):
    text = EMBEDDED.read_text().replace("max_l0_fraction = 0.02\n", "", 1)
    with pytest.raises(ConfigError, match=r"claim 'sparsity\[coarse\]' is missing parameters \['max_l0_fraction'\]"):
        load_profile(str(write_profile(tmp_path, text)))


def test_unknown_sae_role(tmp_path):
    text = EMBEDDED.read_text().replace("[saes.fine]", "[saes.medium]")
    with pytest.raises(ConfigError, match=r"unknown SAE role in custom.toml 'medium'; valid choices: 'coarse', 'fine'"):
        load_profile(str(write_profile(tmp_path, text)))


def test_overrides_replace_analysis_and_prompts():
    profile = with_overrides(load_profile("smollm2-135m"), seed=7, permutations=999, concept="/tmp/c.jsonl")
    assert (profile.analysis.seed, profile.analysis.permutations, profile.prompts.concept) == (7, 999, "/tmp/c.jsonl")
    with pytest.raises(ConfigError, match="unknown override 'colour'"):
        with_overrides(profile, colour="red")


def test_relative_paths_follow_the_toml_file(tmp_path):
    """A profile and its prompts copied anywhere: paths resolve against the TOML's own folder, and the
    anchors file beside it comes along."""
    import shutil

    from harness.core.paths import PROFILES_DIR, PROMPTS_DIR

    folder = tmp_path / "elsewhere"
    (folder / "data").mkdir(parents=True)
    for name in ("france.jsonl", "neutral.jsonl", "near_miss.jsonl"):
        shutil.copy(PROMPTS_DIR / name, folder / "data" / name)
    text = EMBEDDED.read_text().replace('"../prompts/', '"data/').replace('"../saes/', f'"{FIXTURES_DIR}/saes/')
    (folder / "mine.toml").write_text(text)
    shutil.copy(PROFILES_DIR / "smollm2-135m.anchors.toml", folder / "mine.anchors.toml")
    profile = load_profile(str(folder / "mine.toml"))
    assert profile.prompts.concept == str(folder / "data" / "france.jsonl")
    assert len(profile.claims) == len(load_profile("smollm2-135m").claims)  # the sidecar's claims came along
    assert profile.anchors.coarse == load_profile("smollm2-135m").anchors.coarse


def test_extends_inherits_and_anchors_belong_to_the_concept(tmp_path):
    base = load_profile("smollm2-135m")
    same = tmp_path / "same.toml"
    same.write_text('extends = "smollm2-135m"\nname = "same"\n\n[[claims]]\nfamily = "facet"\nname = "second"\n'
                    'statement = "Two sub-features prefer a facet."\nmin_sub_features = 2\n')
    child = load_profile(str(same))
    assert child.model == base.model and child.saes == base.saes and child.steering == base.steering
    assert child.anchors == base.anchors  # same concept prompts: the parent's anchors and their claims
    assert {c.claim_id for c in child.claims} == {c.claim_id for c in base.claims} | {"facet[second]"}
    assert child.extends.endswith("smollm2-135m.toml")

    other = tmp_path / "other.toml"
    other.write_text(f'extends = "smollm2-135m"\nname = "other"\n[prompts]\nconcept = "{PROMPTS}/near_miss.jsonl"\n'
                     f'near_miss = "{PROMPTS}/france.jsonl"\nconcept_words = ["zzz"]\n')
    with pytest.raises(ConfigError, match=r"need coarse anchors, and the profile has none"):
        load_profile(str(other))  # another concept: the parent's anchors do not apply
    fresh = load_profile(str(other), require_anchors=False)
    assert fresh.anchors.coarse == () and fresh.prompts.neutral == base.prompts.neutral
    assert not any(c.family in ("selectivity", "geometry", "sub_features") for c in fresh.claims)

    loop = tmp_path / "loop.toml"
    loop.write_text(f'extends = "{loop}"\nname = "loop"\n')
    with pytest.raises(ConfigError, match="a cycle"):
        load_profile(str(loop))


def test_a_child_with_another_concept_inherits_no_steering_unless_it_brings_its_own(tmp_path):
    """The parent's lexicons score France words: an Italy child without [steering] must not run them."""
    (tmp_path / "italy.txt").write_text("\n".join(f"Rome and Venice, line {i}." for i in range(30)))
    (tmp_path / "italy.toml").write_text('extends = "smollm2-135m"\nname = "italy"\n[prompts]\nconcept = "italy.txt"\n'
                                         'concept_words = ["rome", "venice"]\n')
    italy = load_profile(str(tmp_path / "italy.toml"), require_anchors=False)
    assert not italy.claims_of("steering") and italy.steering is None
    japan = load_profile("smollm2-135m-japan")  # brings its own [steering]: the claims come along
    assert japan.claims_of("steering") and "Japan" in japan.steering.concept_words


def test_a_parameter_describes_its_valid_values_as_a_user_reads_them():
    from harness.core.families import Param

    assert Param(int, low=0).describe() == "an integer >= 0 (required)"
    assert Param(float, 0.5, low=0.0, high=1.0).describe() == "a number in [0.0, 1.0] (default 0.5)"
    assert Param(float, high=2.0).describe() == "a number <= 2.0 (required)"
    assert Param(str, "a", choices=("a", "b")).describe() == "a string in ['a', 'b'] (default 'a')"
