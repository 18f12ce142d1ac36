"""The pytest plugin end to end (pytester): parametrized ids from the profile, the ledger and
report written in pytest_sessionfinish, and the exit status as the GO/NO-GO gate.

The session's ClaimsRun is the planted world (no model), injected through the plugin's stash.
"""

from __future__ import annotations

import json
import shutil

import pytest

from harness.core.paths import REPO_ROOT

CONFTEST = """
import pytest
from harness.entry.plugin import PROFILE_KEY, RUN_KEY
from tests import planted


def pytest_configure(config):
    run = planted.claims_run(effect={effect})
    config.stash[PROFILE_KEY] = run.profile
    config.stash[RUN_KEY] = run
"""


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch):
    """The subprocess imports harness, fixtures and tests from this checkout."""
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))


# The project's own claim modules, named: a module a researcher adds to claims/ never changes these tests.
BUILT_IN_MODULES = ("test_empty_top_left.py", "test_geometry.py", "test_go_gate.py", "test_loud_unselective.py",
                    "test_reconstruction.py", "test_selectivity.py", "test_sparsity.py", "test_steering.py",
                    "test_sub_features.py")


def copy_claims(pytester: pytest.Pytester) -> None:
    claims = pytester.mkdir("claims")
    for name in BUILT_IN_MODULES:
        shutil.copy(REPO_ROOT / "claims" / name, claims / name)


def make_suite(pytester: pytest.Pytester, effect: bool) -> None:
    pytester.makeconftest(CONFTEST.format(effect=effect))
    copy_claims(pytester)


def test_go_run_writes_ledger_and_exits_zero(pytester):
    make_suite(pytester, effect=True)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=9, deselected=1)  # test_steering: the planted profile declares no steering claim
    assert result.ret == 0
    result.stdout.fnmatch_lines(["claims: 1 test(s) deselected: profile 'planted' (from a test) declares no claims of "
                                 "family 'steering'; declare them in a profile's [[claims]] and pass it with --profile"])
    result.stdout.fnmatch_lines(["*claims verdict*", "GATE GO: *", "*random-SAE control: NO-GO*",
                                 "findings, phase 1 (never gate): *", "report: *out/index.html"])
    ledger = json.loads((pytester.path / "out" / "claims.json").read_text())
    assert ledger["verdict"] == "GO" and ledger["exit_status"] == 0
    gate = ledger["gate"]
    assert gate["verdict"] == "GO" and gate["claims"] == ["go_gate[go]"] and gate["control_verdict"] == "NO-GO"
    assert gate["rule"].startswith("GO when some coarse anchor") and gate["anchors"][0]["sub_features"]["lower_bound"] >= 3
    # Every Phase 1 finding also says how it fares on the random SAE.
    assert all(c["control_verdict"] in ("held", "refuted", "inconclusive", "not evaluated")
               for c in ledger["claims"] if c["family"] not in ("go_gate", "steering"))
    ids = {c["id"] for c in ledger["claims"]}
    assert "selectivity[coarse-5]" in ids and "go_gate[go]" in ids
    assert all(c["nodeid"].startswith("claims/test_") for c in ledger["claims"])
    assert (pytester.path / "out" / "index.html").is_file()
    assert len(list((pytester.path / "out" / "runs").iterdir())) == 1


def test_no_go_run_fails_and_says_why(pytester):
    make_suite(pytester, effect=False)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["GATE NO-GO: *go_gate[[]go[]]*", "FAILED claims/test_go_gate.py::test_go_gate[[]go[]]*"])
    ledger = json.loads((pytester.path / "out" / "claims.json").read_text())
    assert ledger["verdict"] == "NO-GO"


def test_unknown_profile_is_a_usage_error(pytester):
    pytester.makeconftest('"""The claims plugin comes from the installed pytest11 entry point."""')
    claims = pytester.mkdir("claims")
    shutil.copy(REPO_ROOT / "claims" / "test_go_gate.py", claims / "test_go_gate.py")
    result = pytester.runpytest_subprocess("claims", "--profile", "gemma-3", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown profile 'gemma-3'; valid choices: *'smollm2-135m'*"])


def test_partial_run_is_go_only_when_the_gate_ran(pytester):
    """-k selects the gate and one family: the gate held, so GO (the ledger says the run is partial);
    -k without the gate: the gate is not evaluated, so NO-GO."""
    make_suite(pytester, effect=True)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q", "-k",
                                           "go_gate or sparsity")
    assert result.ret == 0, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines(["GATE GO: partial run: *"])
    ledger = json.loads((pytester.path / "out" / "claims.json").read_text())
    assert ledger["verdict"] == "GO" and ledger["partial"] and ledger["exit_status"] == 0
    not_run = [c for c in ledger["claims"] if c["verdict"] == "not evaluated"]
    assert {c["family"] for c in not_run} >= {"selectivity", "geometry", "sub_features"}
    assert "partial run" in (pytester.path / "out" / "index.html").read_text()
    result = pytester.runpytest_subprocess("claims", "--html=out2", "-p", "no:cacheprovider", "-q", "-k", "sparsity")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["GATE NO-GO: partial run: go_gate[[]go[]] not evaluated*"])


def test_boundary_world_is_no_go(pytester):
    """The gate's boundary through the main job: 2 true sub-features and 11 aligned rows that prefer the
    concept but never co-fire with the anchor within a set. NO-GO, exit 1, with the count in the ledger."""
    pytester.makeconftest(CONFTEST.format(effect=True).replace("planted.claims_run(effect=True)",
                                                               "planted.claims_run(effect=True, boundary=True)"))
    copy_claims(pytester)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    assert result.ret == 1, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines(["GATE NO-GO: go_gate[[]go[]] inconclusive: no anchor passes the rule*"])
    ledger = json.loads((pytester.path / "out" / "claims.json").read_text())
    part = ledger["gate"]["anchors"][0]
    assert part["sub_features"]["lower_bound"] == 2 and part["sub_features"]["tested"] >= 12
    assert part["selectivity"]["verdict"] == part["geometry"]["verdict"] == "held"


def test_go_refused_when_the_random_sae_control_also_says_go(pytester):
    """The planted hierarchy holds, but the control is a world where the rule also says GO: NO-GO, exit 1."""
    pytester.makeconftest(CONFTEST.format(effect=True).replace("planted.claims_run(effect=True)",
                                                               "planted.claims_run(effect=True, control='same')"))
    copy_claims(pytester)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    assert result.ret == 1, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines(["GATE NO-GO: go_gate[[]go[]] inconclusive: GO through coarse-5*GO refused*",
                                 "*random-SAE control: GO (so GO is refused)*"])
    ledger = json.loads((pytester.path / "out" / "claims.json").read_text())
    assert ledger["gate"]["control_verdict"] == "GO" and ledger["verdict"] == "NO-GO"


def test_a_failed_load_stops_the_session_once(pytester):
    """The planted world whose analysis cannot be built: exit 6, one message, no report written."""
    pytester.makeconftest(CONFTEST.format(effect=True) + """
    from harness.core.errors import MissingResourceError
    def broken():
        raise MissingResourceError("SAE weights are truncated")
    type(run).analysis = property(lambda self: broken())
    run.__dict__.pop("analysis", None)
""")
    copy_claims(pytester)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    assert result.ret == 6
    output = result.stdout.str()
    assert output.count("SAE weights are truncated") <= 2 and "SETUP FAILED (exit 6)" in output
    assert not (pytester.path / "out").exists()


XDIST_CONFTEST = """
import pytest
from harness.entry.plugin import PROFILE_KEY, RUN_KEY
from tests import planted


def pytest_configure(config):
    run = planted.claims_run_with_steering(effect=True)
    config.stash[PROFILE_KEY] = run.profile
    config.stash[RUN_KEY] = run
"""


def test_xdist_ledger_equals_the_serial_one(pytester):
    """Two workers: the controller's ledger (claims, verdict, steering section) equals a serial run's."""
    pytester.makeconftest(XDIST_CONFTEST)
    copy_claims(pytester)
    serial = pytester.runpytest_subprocess("claims", "--html=serial", "-p", "no:cacheprovider", "-q")
    parallel = pytester.runpytest_subprocess("claims", "--html=parallel", "-p", "no:cacheprovider", "-q", "-n", "2")
    grouped = pytester.runpytest_subprocess("claims", "--html=grouped", "-p", "no:cacheprovider", "-q", "-n", "2",
                                            "--dist", "loadgroup")
    assert serial.ret == parallel.ret == grouped.ret == 0, parallel.stdout.str()[-2000:] + grouped.stdout.str()[-2000:]

    def essence(folder):
        ledger = json.loads((pytester.path / folder / "claims.json").read_text())
        claims = {c["id"]: (c["verdict"], c["statistic"], c["p_value"], c["reason"]) for c in ledger["claims"]}
        return ledger["verdict"], ledger["partial"], claims, ledger["steering"]

    assert essence("serial") == essence("parallel") == essence("grouped")
    assert essence("parallel")[3]["dose_response"]  # the steering section reached the controller


def readme_example(name: str) -> str:
    """The fenced block that follows `<!-- readme-example: NAME -->` in README.md, verbatim."""
    text = (REPO_ROOT / "README.md").read_text()
    marker = f"<!-- readme-example: {name} -->"
    assert marker in text, marker
    block = text.split(marker, 1)[1].split("```", 2)[1]
    return block.split("\n", 1)[1]  # drop the fence's language tag


USER_CONFTEST = CONFTEST + """
    import dataclasses
    from harness.core.config import ClaimSpec
    extra = ClaimSpec(family="facet_contrast", name="top-sub-feature-cuisine", statement="user claim",
                      params={params}, origin="user profile: claims[0]")
    config.stash[PROFILE_KEY] = run.profile = run.declared_profile = dataclasses.replace(
        run.profile, claims=(*run.profile.claims, extra))
"""


def ledger_essence(path):
    ledger = json.loads(path.read_text())
    return ledger["verdict"], {c["id"]: (c["verdict"], c["statistic"], c["p_value"]) for c in ledger["claims"]}


def test_readme_user_claim_runs_beside_the_built_ins_and_changes_none_of_them(pytester):
    """README's example claim, verbatim, in claims/ with the built-in modules: its record lands in the
    ledger (exploratory) and the report (its own section); the built-in claims and GO are unchanged."""
    make_suite(pytester, effect=True)
    alone = pytester.runpytest_subprocess("claims", "--html=alone", "-p", "no:cacheprovider", "-q")
    assert alone.ret == 0
    pytester.makeconftest(USER_CONFTEST.format(effect=True, params={"facet": "cuisine"}))
    (pytester.path / "claims" / "test_facet_contrast.py").write_text(readme_example("claims/test_facet_contrast.py"))
    both = pytester.runpytest_subprocess("claims", "--html=both", "-p", "no:cacheprovider", "-q")
    assert both.ret == 0, both.stdout.str()[-3000:]
    verdict_alone, claims_alone = ledger_essence(pytester.path / "alone" / "claims.json")
    verdict_both, claims_both = ledger_essence(pytester.path / "both" / "claims.json")
    user = claims_both.pop("facet_contrast[top-sub-feature-cuisine]")
    assert (verdict_both, claims_both) == (verdict_alone, claims_alone)
    record = [c for c in json.loads((pytester.path / "both" / "claims.json").read_text())["claims"]
              if c["family"] == "facet_contrast"][0]
    assert record["gating"] is False and record["statistic_name"].endswith("on cuisine minus other facets")
    assert user[0] in ("held", "refuted", "inconclusive") and record["effect"]["ci_low"] is not None
    html = (pytester.path / "both" / "index.html").read_text()
    assert 'id="facet-contrast"' in html and "finding" in html


def test_exploratory_failure_never_flips_go(pytester):
    """A failing exploratory claim: the test fails visibly, the verdict stays GO and the exit status 0."""
    pytester.makeconftest(USER_CONFTEST.format(effect=True, params={"facet": "cuisine"}))
    copy_claims(pytester)
    (pytester.path / "claims" / "test_never.py").write_text(
        "from harness import claim_family, make_record, Param\n"
        "@claim_family('facet_contrast', params={'facet': Param(str, 'cuisine')}, gating=False)\n"
        "def test_never(claim, analysis, record_claim):\n"
        "    record = record_claim(make_record(claim, verdict='refuted', statistic_name='x', statistic=0.0,\n"
        "                                      threshold=1.0, comparison='>', reason='planted refutation'))\n"
        "    assert record.verdict == 'held', record.message\n")
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    assert result.ret == 0, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines(["GATE GO: *", "findings, phase 1 (never gate): *1 refuted*", "*1 failed*"])


def test_user_family_parameters_are_usage_errors(pytester):
    pytester.makeconftest(USER_CONFTEST.format(effect=True, params={"facett": "cuisine"}))
    copy_claims(pytester)
    (pytester.path / "claims" / "test_facet_contrast.py").write_text(readme_example("claims/test_facet_contrast.py"))
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*user profile: claims[[]0[]]: claim 'facet_contrast[[]top-sub-feature-cuisine[]]': "
                                 "unknown parameter 'facett' of family 'facet_contrast'; valid: facet: a string*"])
    assert not (pytester.path / "out").exists()


def test_a_family_no_module_registers_is_a_usage_error(pytester):
    """A typo in `family`: with the whole claims/ folder collected, one usage error naming the registered ones."""
    pytester.makeconftest(USER_CONFTEST.format(effect=True, params={"facet": "cuisine"}))
    copy_claims(pytester)
    result = pytester.runpytest_subprocess("claims", "-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*claim family 'facet_contrast' is registered by no module in the collected claims; "
                                 "registered: *go_gate*"])


# ---------------------------------------------------------------- re-validation after an SAE update
FOLLOW_CONFTEST = """
import dataclasses
from pathlib import Path

import numpy as np

import harness.entry.session as session
from harness.core.config import ClaimSpec
from harness.entry.plugin import PROFILE_KEY, RUN_KEY
from tests import planted

UPDATE = {update!r}  # "none": the baseline run; "shuffled": the fine SAE's rows reordered; "random": a new fine SAE


def pytest_configure(config):
    run = planted.claims_run(effect=True)
    extra = ClaimSpec(family="selectivity", name="fine-10", statement="Fine feature 10 prefers the concept.",
                      params={{"sae": "fine", "feature": 10, "min_selectivity": 0.5}})
    run.profile = run.declared_profile = dataclasses.replace(run.profile, claims=run.profile.claims + (extra,))
    if UPDATE != "none":
        real = session.sae_hash
        session.sae_hash = lambda cfg: "updatedfinesae00" if cfg.role == "fine" else real(cfg)
        fine, pooled = run.directions["fine"], run.tables.pooled["fine"]
        if UPDATE == "shuffled":  # the same features under new indices: every verdict must stay
            order = np.random.default_rng(0).permutation(fine.shape[0])
            fine, pooled = fine[order], pooled[:, order]
        else:
            fine = np.random.default_rng(1).standard_normal(fine.shape).astype(np.float32)
            fine /= np.linalg.norm(fine, axis=1, keepdims=True)
        run.__dict__["directions"] = {{"coarse": run.directions["coarse"], "fine": fine}}
        run.__dict__["tables"] = dataclasses.replace(run.tables, pooled={{**run.tables.pooled, "fine": pooled}})
    if config.getoption("claims_baseline"):
        run.baseline = Path(config.getoption("claims_baseline"))
        run.followed
        run.__dict__["analysis"] = planted.Analysis.build(run.profile, run.tables, run.prompt_sets, run.directions,
                                                          decoder_norms=run.decoder_norms, sae_info=run.sae_info)
        run.__dict__["control"] = planted.control_analysis(run.prompt_sets, run.profile)
    config.stash[PROFILE_KEY] = run.declared_profile
    config.stash[RUN_KEY] = run
"""


def follow_suite(pytester, update: str) -> None:
    pytester.makeconftest(FOLLOW_CONFTEST.format(update=update))
    if not (pytester.path / "claims").exists():
        copy_claims(pytester)


def revalidate(pytester, update: str):
    """A baseline run on the planted world, then the same claims after `update`, against it."""
    follow_suite(pytester, "none")
    assert pytester.runpytest_subprocess("claims", "--html=base", "-p", "no:cacheprovider", "-q").ret == 0
    follow_suite(pytester, update)
    return pytester.runpytest_subprocess("claims", "--html=after", "--baseline", "base/claims.json",
                                         "-p", "no:cacheprovider", "-q")


def test_revalidation_follows_a_reindexed_sae_and_every_verdict_stays(pytester):
    result = revalidate(pytester, "shuffled")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["diff vs baseline *: GATE GO -> GO; changed: fine SAE (weights * -> updatedfinesae00*",
                                 "  followed into the new SAE: fine-10 -> fine-* (cos 1.00)"])
    before = {c["id"]: c for c in json.loads((pytester.path / "base" / "claims.json").read_text())["claims"]}
    after = json.loads((pytester.path / "after" / "claims.json").read_text())
    claim = next(c for c in after["claims"] if c["id"] == "selectivity[fine-10]")
    assert claim["reason"].startswith("tested on the followed feature fine-10 -> fine-")
    assert claim["details"]["followed"][0]["old"] == 10 and claim["details"]["followed"][0]["new"] != 10
    assert claim["statistic"] == before["selectivity[fine-10]"]["statistic"]
    assert after["diff"]["flipped"] == [] and after["diff"]["what_changed"][0].startswith("fine SAE")
    assert {c["id"]: c["verdict"] for c in after["claims"]} == {i: c["verdict"] for i, c in before.items()}


def test_revalidation_says_which_claims_need_discover_when_a_feature_has_no_match(pytester):
    result = revalidate(pytester, "random")
    assert result.ret == 1  # a random fine SAE has no sub-features: the gate says NO-GO, as it should
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*followed into the new SAE: fine-10: no match (best cos 0.*): re-run discover*"])
    after = json.loads((pytester.path / "after" / "claims.json").read_text())
    claim = next(c for c in after["claims"] if c["id"] == "selectivity[fine-10]")
    assert claim["verdict"] == "not evaluated"
    assert "fine-10: no match (best fine-" in claim["reason"] and "python -m harness discover" in claim["reason"]
    assert "selectivity[fine-10]" in {row["id"] for row in after["diff"]["flipped"]}


def test_the_header_names_the_profile_and_the_cache_folder(pytester, monkeypatch):
    make_suite(pytester, effect=True)
    monkeypatch.setenv("SAE_CLAIMS_CACHE", str(pytester.path / "my-cache"))
    result = pytester.runpytest_subprocess("claims", "--co", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["claims profile: planted (from a test; *)",
                                 f"claims cache: {pytester.path / 'my-cache'} ($SAE_CLAIMS_CACHE)"])


def test_without_a_baseline_ids_registered_on_another_sae_are_not_evaluated(pytester):
    """The profile says which SAE its ids count from; a run on another one says so instead of testing
    index 10 of an unrelated SAE."""
    follow_suite(pytester, "shuffled")
    conftest = (pytester.path / "conftest.py").read_text().replace(
        "    config.stash[PROFILE_KEY] = run.declared_profile",
        "    run.profile = run.declared_profile = dataclasses.replace(run.declared_profile, anchors=dataclasses.replace("
        "run.declared_profile.anchors, sae_hashes={'fine': 'registeredonold'}))\n"
        "    run.__dict__.pop('followed', None)\n"
        "    config.stash[PROFILE_KEY] = run.declared_profile")
    pytester.makeconftest(conftest)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    ledger = json.loads((pytester.path / "out" / "claims.json").read_text())
    claim = next(c for c in ledger["claims"] if c["id"] == "selectivity[fine-10]")
    assert claim["verdict"] == "not evaluated" and "Traceback" not in result.stdout.str()
    assert "the profile's fine ids count from SAE registeredonold" in claim["reason"]
    assert "give --baseline a ledger from a run on that SAE, or re-run discover" in claim["reason"]


SEQUENTIAL_CONFTEST = """
import dataclasses, os
import pytest
from harness.engine.analysis import Analysis
from harness.entry.plugin import PROFILE_KEY, RUN_KEY
from tests import planted


def pytest_configure(config):
    run = planted.claims_run(effect=True)
    analysis = dataclasses.replace(run.profile.analysis, looks=3, look=int(os.environ["LOOK"]))
    run.profile = run.declared_profile = dataclasses.replace(run.profile, analysis=analysis)
    run.__dict__["analysis"] = Analysis.build(run.profile, run.tables, run.prompt_sets, run.directions,
                                              decoder_norms=run.decoder_norms, sae_info=run.sae_info)
    config.stash[PROFILE_KEY] = run.profile
    config.stash[RUN_KEY] = run
"""


def test_a_sequential_look_decides_at_its_share_of_alpha_and_a_repeated_look_is_refused(pytester, monkeypatch):
    from harness.statistics.sequential import look_alpha, spent

    pytester.makeconftest(SEQUENTIAL_CONFTEST)
    copy_claims(pytester)
    monkeypatch.setenv("LOOK", "1")
    first = pytester.runpytest_subprocess("claims", "--html=look1", "-p", "no:cacheprovider", "-q")
    first.stdout.fnmatch_lines([f"  sequential: look 1 of 3 (pocock spending): decides at alpha "
                                f"{look_alpha(0.05, 1, 3, 'pocock'):.4f}; *"])
    ledger = json.loads((pytester.path / "look1" / "claims.json").read_text())
    assert ledger["sequential"] == {"look": 1, "looks": 3, "spending": "pocock", "alpha": 0.05,
                                    "alpha_this_look": look_alpha(0.05, 1, 3, "pocock"),
                                    "alpha_spent": spent(0.05, 1 / 3, "pocock")}
    assert "sequential look</span>1 of 3 (pocock): alpha 0.0226 at this look" in (pytester.path / "look1" / "index.html").read_text()
    share = look_alpha(0.05, 1, 3, "pocock")
    levels = {c["id"]: c["effect"]["ci_level"] for c in ledger["claims"] if c["family"] == "selectivity"}
    # each interval at the look's level (a set with few firings widens it fivefold, as at any look)
    assert all(1 - level in (pytest.approx(share), pytest.approx(share / 5)) for level in levels.values()), levels
    # The same look again, against the first: each look decides once (preflight, before any model loads).
    import dataclasses

    from harness.core.errors import ConfigError
    from harness.entry.preflight import check_baseline
    from tests import planted

    def at(look, **change):
        profile = planted.profile()
        return dataclasses.replace(profile, analysis=dataclasses.replace(profile.analysis, looks=3, look=look, **change))

    baseline = pytester.path / "look1" / "claims.json"
    with pytest.raises(ConfigError, match=r"--look 1 does not follow the baseline's look 1 of 3; valid: 2\.\.3"):
        check_baseline(at(1), baseline)
    with pytest.raises(ConfigError, match=r"a sequential plan cannot change between looks"):
        check_baseline(at(2, spending="obrien-fleming"), baseline)
    assert check_baseline(at(2), baseline) == baseline
    monkeypatch.setenv("LOOK", "2")
    second = pytester.runpytest_subprocess("claims", "--html=look2", "--baseline", "look1/claims.json",
                                           "-p", "no:cacheprovider", "-q")
    assert second.ret in (0, 1)
    assert json.loads((pytester.path / "look2" / "claims.json").read_text())["sequential"]["look"] == 2


SECTION_MODULE = '''
from harness import Param, Section, Table, claim_family, draw, make_record, assert_held


def rates(claims, analysis):
    """Stored in the ledger: the data the section draws (computed in the run, never in the renderer)."""
    fires = analysis.acts("coarse")[:, analysis.top_anchor] > 0
    return {"facet_rates": {facet: float(fires[analysis.rows("concept", facet=facet)].mean())
                            for facet in analysis.facet_names()}}


def report_facet_contrast(claims, ledger):
    rows = [[facet, rate] for facet, rate in ledger.tables["facet_rates"].items()]
    figure = {"id": "facet-rates", "data": [{"type": "bar", "x": [r[0] for r in rows], "y": [r[1] for r in rows]}],
              "layout": {"title": {"text": "fire rate per facet"}}}
    return Section("My facets", [*claims, figure, Table(["facet", "fire rate"], rows, title="Fire rate per facet"),
                                 draw.claim_details(claims[0])], note="drawn by my family")


def decide(claim, analysis):
    return make_record(claim, verdict="held", statistic_name="x", statistic=1.0, threshold=0.0, comparison=">",
                       reason="planted")


@claim_family("facet_contrast", {"facet": Param(str, "cuisine")}, decision=decide, tables=rates,
              report=report_facet_contrast)
def test_facet_contrast(claim, analysis, record_claim):
    assert_held(record_claim(decide(claim, analysis)))
'''


def test_a_researcher_family_draws_its_own_report_section(pytester):
    """`tables=` stores the family's data in the ledger; `report=` draws its section from it (a figure,
    a table, the claim). A section that fails to draw falls back to the generic one and says why."""
    pytester.makeconftest(USER_CONFTEST.format(effect=True, params={"facet": "cuisine"}))
    copy_claims(pytester)
    (pytester.path / "claims" / "test_facet_contrast.py").write_text(SECTION_MODULE)
    result = pytester.runpytest_subprocess("claims", "--html=out", "-p", "no:cacheprovider", "-q")
    assert result.ret == 0, result.stdout.str()[-3000:]
    ledger = json.loads((pytester.path / "out" / "claims.json").read_text())
    assert set(ledger["tables"]["facet_rates"]) == {"cuisine", "geography", "history", "sport"}
    html = (pytester.path / "out" / "index.html").read_text()
    section = html.split('<section id="facet-contrast">', 1)[1].split("</section>", 1)[0]
    assert "<h2>My facets</h2>" in section and "drawn by my family" in section
    assert 'id="facet-rates"' in section and "<h3>Fire rate per facet</h3>" in section
    assert "facet_contrast[top-sub-feature-cuisine]" in section
    # The built-in sections are still there, in family order after the gate's.
    assert html.index('id="selectivity"') < html.index('id="geometry"') < html.index('id="facet-contrast"')
    # Under xdist the controller collects nothing: it registers the family from the module that reported it.
    parallel = pytester.runpytest_subprocess("claims", "--html=parallel", "-p", "no:cacheprovider", "-q", "-n", "2")
    assert parallel.ret == 0, parallel.stdout.str()[-3000:]
    assert json.loads((pytester.path / "parallel" / "claims.json").read_text())["tables"]["facet_rates"] == \
        ledger["tables"]["facet_rates"]
    assert "<h2>My facets</h2>" in (pytester.path / "parallel" / "index.html").read_text()

    broken = SECTION_MODULE.replace('rows = [[facet', 'rows = 1 / 0 or [[facet')
    (pytester.path / "claims" / "test_facet_contrast.py").write_text(broken)
    result = pytester.runpytest_subprocess("claims", "--html=again", "-p", "no:cacheprovider", "-q")
    assert result.ret == 0, result.stdout.str()[-3000:]
    section = (pytester.path / "again" / "index.html").read_text().split('<section id="facet-contrast">', 1)[1]
    assert "report section failed (ZeroDivisionError: division by zero); shown plainly" in section.split("</section>")[0]
