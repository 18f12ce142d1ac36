"""The pytest plugin behind `pytest claims/ --html=reports/`.

- Options in one group ("claims"), profile from --profile, ini `claims_profile`, env
  SAE_CLAIMS_PROFILE, else smollm2-135m.
- Each test module under claims/ names its CLAIM_FAMILY; its `claim` argument is
  parametrized from the profile's claims with readable ids (test_selectivity[coarse-3999]).
- A test hands its ClaimRecord to the `record_claim` fixture; the record travels on the
  test report (so it also reaches the controller under xdist) and the ledger and HTML are
  written once, in pytest_sessionfinish, never on an xdist worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.config import load_profile, with_overrides
from harness.errors import HarnessError
from harness.ledger import ClaimRecord

RUN_KEY = pytest.StashKey["object"]()
PROFILE_KEY = pytest.StashKey["object"]()
RECORD_KEY = pytest.StashKey[ClaimRecord]()
PROPERTY = "claim_record"
DEFAULT_PROFILE = "smollm2-135m"
PROFILE_ENV = "SAE_CLAIMS_PROFILE"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claims", "interpretability claims")
    group.addoption("--profile", dest="claims_profile", default=None,
                    help=f"profile name or .toml path (default: ini claims_profile, ${PROFILE_ENV}, {DEFAULT_PROFILE})")
    group.addoption("--html", dest="claims_html", default=None, metavar="DIR",
                    help="write DIR/claims.json and DIR/index.html (pytest-html is disabled with -p no:html)")
    group.addoption("--baseline", dest="claims_baseline", default=None, metavar="LEDGER",
                    help="a previous claims.json: the report adds a diff against it")
    group.addoption("--concept-prompts", dest="claims_concept", default=None, metavar="FILE",
                    help="JSONL of concept prompts to use instead of the profile's")
    group.addoption("--neutral-prompts", dest="claims_neutral", default=None, metavar="FILE")
    group.addoption("--near-miss-prompts", dest="claims_near_miss", default=None, metavar="FILE")
    group.addoption("--claims-seed", dest="claims_seed", type=int, default=None,
                    help="seed for permutations and bootstraps (default: the profile's)")
    group.addoption("--claims-permutations", dest="claims_permutations", type=int, default=None,
                    help="label shuffles per permutation test (default: the profile's, 10,000)")
    parser.addini("claims_profile", "default profile for the claims suite", default="")


def _profile_name(config: pytest.Config) -> str:
    return (config.getoption("claims_profile") or config.getini("claims_profile")
            or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE)


def get_profile(config: pytest.Config):
    if PROFILE_KEY not in config.stash:
        def absolute(value):
            return str(Path(value).resolve()) if value else None
        try:
            profile = with_overrides(
                load_profile(_profile_name(config)),
                seed=config.getoption("claims_seed"), permutations=config.getoption("claims_permutations"),
                concept=absolute(config.getoption("claims_concept")),
                neutral=absolute(config.getoption("claims_neutral")),
                near_miss=absolute(config.getoption("claims_near_miss")),
            )
        except HarnessError as exc:
            raise pytest.UsageError(str(exc)) from exc
        config.stash[PROFILE_KEY] = profile
    return config.stash[PROFILE_KEY]


def get_run(config: pytest.Config):
    if RUN_KEY not in config.stash:
        from harness.session import ClaimsRun
        baseline = config.getoption("claims_baseline")
        if baseline and not Path(baseline).is_file():
            raise pytest.UsageError(f"--baseline {baseline!r} does not exist; give a claims.json from an earlier run")
        config.stash[RUN_KEY] = ClaimsRun(get_profile(config), baseline=Path(baseline) if baseline else None)
    return config.stash[RUN_KEY]


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ClaimsSession(config), "claims-session")
    if not hasattr(config, "workerinput"):
        get_profile(config)  # a bad --profile or prompt file is a usage error, before collection
    config.addinivalue_line("markers", "claims_family(name): a claims module's family (set via CLAIM_FAMILY)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "claim" not in metafunc.fixturenames:
        return
    family = getattr(metafunc.module, "CLAIM_FAMILY", None)
    if family is None:
        raise pytest.UsageError(f"{metafunc.module.__name__} takes `claim` but sets no CLAIM_FAMILY")
    specs = get_profile(metafunc.config).claims_of(family)
    metafunc.parametrize("claim", specs, ids=[spec.name for spec in specs])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A family the profile declares no claims for is deselected, not skipped: nothing was claimed."""
    def unclaimed(item: pytest.Item) -> bool:
        if "claim" not in getattr(item, "fixturenames", ()):
            return False
        return any("empty parameter set" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skip"))

    dropped = [item for item in items if unclaimed(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not unclaimed(item)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if call.when != "call" and not (call.when == "setup" and report.failed):
        return report
    record = item.stash.get(RECORD_KEY, None)
    spec = getattr(getattr(item, "callspec", None), "params", {}).get("claim")
    if record is None and spec is not None and report.failed:
        # The claim could not be evaluated: it did not hold, and the ledger says why.
        message = str(call.excinfo.value) if call.excinfo else "error"
        record = ClaimRecord(id=spec.claim_id, family=spec.family, statement=spec.statement,
                             statistic_name="error", statistic=None, threshold=None, passed=False, verdict="error",
                             reason=f"could not be evaluated: {message.splitlines()[0][:300] if message else 'error'}")
    if record is not None:
        update = {"duration_s": round(report.duration, 3), "nodeid": item.nodeid}
        if report.failed and record.verdict == "held":  # the test body failed after recording a held claim
            update.update(passed=False, verdict="error", reason=f"the test failed after recording: {record.reason}")
        record = record.model_copy(update=update)
        report.user_properties.append((PROPERTY, record.model_dump_json()))
    return report


class ClaimsSession:
    """Collects records from test reports and writes the ledger once, at the end (controller only)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: dict[str, ClaimRecord] = {}
        self.summary: tuple[str, str, str] | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == PROPERTY:
                record = ClaimRecord.model_validate_json(value)
                self.records[record.id] = record

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput"):  # xdist worker: the controller writes
            return
        out = self.config.getoption("claims_html")
        if not out or not self.records:
            return
        from harness.session import write_outputs

        run = get_run(self.config)
        for record in self.records.values():
            run.record(record)
        ledger = run.ledger(exit_status=int(exitstatus), steering=run.steering_for_ledger())
        baseline = self.config.getoption("claims_baseline")
        index = write_outputs(ledger, Path(out), baseline=Path(baseline) if baseline else None)
        counts = {v: sum(c.verdict == v for c in ledger.claims) for v in ("held", "refuted", "inconclusive", "error")}
        self.summary = (ledger.verdict, ledger.verdict_reason, str(index), counts)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if not self.summary:
            return
        verdict, reason, index, counts = self.summary
        terminalreporter.section("claims verdict")
        terminalreporter.write_line(", ".join(f"{n} {v}" for v, n in counts.items() if n))
        terminalreporter.write_line(f"{verdict}: {reason}", bold=True, green=verdict == "GO", red=verdict != "GO")
        terminalreporter.write_line(f"report: {index}")
        terminalreporter.write_line(f"ledger: {Path(index).with_name('claims.json')}")
