"""The pytest plugin behind `pytest claims/ --html=reports/`.

- Options in one group ("claims"); the profile comes from --profile, else $SAE_CLAIMS_PROFILE,
  else the ini setting `claims_profile`, else smollm2-135m (the header says which).
- Exit status, the gate a pipeline reads: 0 GO (the go_gate claim held, with any claim the profile
  marks `gating = true`), 1 NO-GO (the gate did not hold; every other claim is a finding beside it), 4 usage error (a bad option,
  profile, prompt file, SAE folder, baseline or output folder: found before any model loads),
  6 setup failure (the model, an SAE, a cache or the hub could not be loaded: reported once, the
  session stops, --html is left untouched).
- Each test in claims/ names its family with @harness.claim_family (built-in or the researcher's
  own, registered there with its parameters); its `claim` argument is parametrized from the
  profile's claims of that family with readable ids (test_selectivity[coarse-3999]). Findings
  (every claim but the gate) are reported and never flip the exit status; steering never gates.
- A test hands its ClaimRecord to the `record_claim` fixture; the record travels on the
  test report (so it also reaches the controller under xdist) and the ledger and HTML are
  written once, in pytest_sessionfinish, never on an xdist worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.core.config import load_profile, with_overrides
from harness.core.errors import ConfigError, HarnessError
from harness.outputs.ledger import ClaimRecord

RUN_KEY = pytest.StashKey["object"]()
PROFILE_KEY = pytest.StashKey["object"]()
SOURCE_KEY = pytest.StashKey[str]()
SETUP_FAILED_KEY = pytest.StashKey[str]()
SETUP_EXIT_KEY = pytest.StashKey[int]()
EXIT_SETUP_FAILED = 6
RECORD_KEY = pytest.StashKey[ClaimRecord]()
USAGE_PROBLEMS_KEY = pytest.StashKey[list]()
PROPERTY = "claim_record"
STEERING_PROPERTY = "claims_steering"  # the steering study's summary, carried to the xdist controller
DEFAULT_PROFILE = "smollm2-135m"
PROFILE_ENV = "SAE_CLAIMS_PROFILE"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claims", "interpretability claims")
    group.addoption("--profile", dest="claims_profile", default=None,
                    help=f"profile name or .toml path (default: ini claims_profile, ${PROFILE_ENV}, {DEFAULT_PROFILE})")
    html_help = "write DIR/claims.json and DIR/index.html"
    try:
        group.addoption("--html", "--claims-html", dest="claims_html", default=None, metavar="DIR", help=html_help)
    except ValueError:  # pytest-html owns --html in this environment (or pass -p no:html)
        group.addoption("--claims-html", dest="claims_html", default=None, metavar="DIR",
                        help=html_help + " (--html belongs to pytest-html here)")
    group.addoption("--baseline", dest="claims_baseline", default=None, metavar="LEDGER",
                    help="a previous claims.json: the report adds a diff against it")
    group.addoption("--baseline-any-profile", dest="claims_baseline_any", action="store_true", default=False,
                    help="allow a --baseline from another profile, model or hook")
    group.addoption("--concept-prompts", dest="claims_concept", default=None, metavar="FILE",
                    help="concept prompts (JSONL with at least \"text\", or .txt, one per line) instead of the profile's")
    group.addoption("--neutral-prompts", dest="claims_neutral", default=None, metavar="FILE")
    group.addoption("--near-miss-prompts", dest="claims_near_miss", default=None, metavar="FILE")
    group.addoption("--claims-seed", dest="claims_seed", type=int, default=None,
                    help="seed for permutations and bootstraps (default: the profile's)")
    group.addoption("--claims-permutations", dest="claims_permutations", type=int, default=None,
                    help="label shuffles per permutation test (default: the profile's, 10,000)")
    group.addoption("--look", dest="claims_look", type=int, default=None, metavar="K",
                    help="which of the profile's declared sequential looks this run is ([analysis] looks; "
                         "default 1): it decides at that look's share of alpha")
    group.addoption("--builtin-claims", dest="claims_builtin", action="store_true", default=False,
                    help="also collect the built-in claim modules (the gate among them), for a profile that extends "
                         "a built-in one and a claims folder of your own")
    parser.addini("claims_profile", "default profile for the claims suite", default="")


def claims_requested(config: pytest.Config) -> bool:
    """Whether this pytest run is a claims run: a claims option, $SAE_CLAIMS_PROFILE or the ini
    `claims_profile`. Installed, the plugin loads in every pytest run of the environment; in any
    other run it checks nothing before collection (a module that takes `claim` still gets the default)."""
    options = ("claims_profile", "claims_html", "claims_baseline", "claims_builtin", "claims_look", "claims_concept",
               "claims_neutral", "claims_near_miss")
    return (any(config.getoption(o) for o in options) or bool(os.environ.get(PROFILE_ENV))
            or bool(config.getini("claims_profile")))


def _profile_name(config: pytest.Config) -> tuple[str, str]:
    """The profile and where it came from: --profile > $SAE_CLAIMS_PROFILE > ini > default."""
    if config.getoption("claims_profile"):
        return config.getoption("claims_profile"), "--profile"
    if os.environ.get(PROFILE_ENV):
        return os.environ[PROFILE_ENV], f"${PROFILE_ENV}"
    if config.getini("claims_profile"):
        return config.getini("claims_profile"), "ini claims_profile"
    return DEFAULT_PROFILE, "default"


def get_profile(config: pytest.Config):
    if PROFILE_KEY not in config.stash:
        def absolute(value):
            return str(Path(value).resolve()) if value else None
        name, source = _profile_name(config)
        seed, permutations = config.getoption("claims_seed"), config.getoption("claims_permutations")
        if seed is not None and seed < 0:
            raise pytest.UsageError(f"--claims-seed {seed} must be >= 0")
        if permutations is not None and permutations < 99:
            raise pytest.UsageError(f"--claims-permutations {permutations} is too few; use >= 99")
        try:
            profile = with_overrides(
                load_profile(name),
                seed=config.getoption("claims_seed"), permutations=config.getoption("claims_permutations"),
                look=config.getoption("claims_look"),
                concept=absolute(config.getoption("claims_concept")),
                neutral=absolute(config.getoption("claims_neutral")),
                near_miss=absolute(config.getoption("claims_near_miss")),
            )
        except HarnessError as exc:
            raise pytest.UsageError(str(exc)) from exc
        config.stash[PROFILE_KEY] = profile
        config.stash[SOURCE_KEY] = source
    return config.stash[PROFILE_KEY]


def get_run(config: pytest.Config):
    if RUN_KEY not in config.stash:
        from harness.entry.session import ClaimsRun
        baseline = config.getoption("claims_baseline")
        config.stash[RUN_KEY] = ClaimsRun(get_profile(config), baseline=Path(baseline) if baseline else None)
    return config.stash[RUN_KEY]


def guarded_setup(config: pytest.Config, what: str, load):
    """Load something the claims need; the first failure stops the session once (exit 6).

    A failed load is remembered: later tests never retry it (no 26 copies of one hub error).
    """
    if SETUP_FAILED_KEY in config.stash:
        pytest.exit(config.stash[SETUP_FAILED_KEY], returncode=config.stash.get(SETUP_EXIT_KEY, EXIT_SETUP_FAILED))
    import contextlib
    import sys
    import time

    # Long steps (model conversion, activation capture, the steering study) draw progress bars; show
    # them on the terminal despite pytest's capture, and say how long each step took.
    capture = config.pluginmanager.getplugin("capturemanager")
    visible = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    try:
        with visible:
            start = time.perf_counter()
            value = load()
            elapsed = time.perf_counter() - start
            if elapsed > 2:
                print(f"[claims] {what}: ready in {elapsed:.1f} s", file=sys.stderr, flush=True)
        return value
    except ConfigError as exc:
        # A profile that contradicts what it loads (an SAE trained at another hook, another d_model) is
        # the user's input, found only once the SAE's own config is read: a usage error, not a verdict.
        message = f"usage error found while loading {what}: {str(exc).splitlines()[0]}"
        config.stash[SETUP_FAILED_KEY] = message
        config.stash[SETUP_EXIT_KEY] = int(pytest.ExitCode.USAGE_ERROR)
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)
    except Exception as exc:  # noqa: BLE001 - loading fails in many ways; each is one setup failure
        first = str(exc).splitlines()[0] if str(exc) else ""
        message = f"setup failed while loading {what}: {type(exc).__name__}: {first}"
        config.stash[SETUP_FAILED_KEY] = message
        pytest.exit(message, returncode=EXIT_SETUP_FAILED)


FIXTURES_PLUGIN = "sae-claims-fixtures"


def pytest_configure(config: pytest.Config) -> None:
    from harness.core.paths import BUILTIN_FIXTURES_PACKAGE, FIXTURES_DIR, import_shipped

    config.pluginmanager.register(ClaimsSession(config), "claims-session")
    if config.pluginmanager.get_plugin(FIXTURES_PLUGIN) is None:
        # The session fixtures (model, SAEs, prompts, feature tables) live in fixtures/claims_fixtures.py,
        # shipped with the package: registered here so that the pytest11 entry point alone brings them.
        config.pluginmanager.register(import_shipped(BUILTIN_FIXTURES_PACKAGE, FIXTURES_DIR, "claims_fixtures"),
                                      FIXTURES_PLUGIN)
    config.addinivalue_line("markers", "xdist_group(name): claims that share a model and SAEs (--dist loadgroup)")
    if hasattr(config, "workerinput"):
        from harness.entry.devices import pin_worker_gpu

        pin_worker_gpu(os.environ)  # one GPU per worker, before anything touches CUDA
    elif claims_requested(config):
        get_profile(config)  # a bad --profile is a usage error, before collection
    if config.getoption("claims_builtin"):
        from harness.core.paths import BUILTIN_CLAIMS_DIR

        named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
        if not any(path == BUILTIN_CLAIMS_DIR or path in BUILTIN_CLAIMS_DIR.parents or BUILTIN_CLAIMS_DIR in path.parents
                   for path in named):
            config.args.append(str(BUILTIN_CLAIMS_DIR))



def pytest_sessionstart(session: pytest.Session) -> None:
    """Prompt files, SAE folders, the baseline and the output folder, checked before any model loads."""
    config = session.config
    if hasattr(config, "workerinput") or RUN_KEY in config.stash or not claims_requested(config):
        return  # xdist workers trust the controller; an injected run (tests) brings its own data
    from harness.entry.preflight import preflight

    try:
        preflight(get_profile(config), baseline=config.getoption("claims_baseline"),
                  html=config.getoption("claims_html"),
                  baseline_any_profile=config.getoption("claims_baseline_any"))
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_report_header(config: pytest.Config) -> list[str]:
    if PROFILE_KEY not in config.stash:
        return []
    from harness.core.paths import CACHE_ENV, cache_dir

    profile = config.stash[PROFILE_KEY]
    where = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else f"default; set ${CACHE_ENV} to move it"
    return [f"claims profile: {profile.name} (from {config.stash.get(SOURCE_KEY, 'a test')}; "
            f"{profile.path or 'built in code'})",
            f"claims cache: {cache_dir()} ({where})"] + sequential_header(profile)


def sequential_header(profile) -> list[str]:
    from harness.statistics.sequential import look_alpha, spent

    a = profile.analysis
    if a.looks <= 1:
        return []
    return [f"sequential: look {a.look} of {a.looks} ({a.spending} spending): decides at alpha "
            f"{look_alpha(a.alpha, a.look, a.looks, a.spending):.4f}; {spent(a.alpha, a.look / a.looks, a.spending):.4f} "
            f"of {a.alpha} spent after this look"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `claim` with the profile's claims of the test's family. A bad family or claim is
    remembered and raised as one usage error after collection (raised here, pytest would print it as
    a collection error with a traceback)."""
    if "claim" not in metafunc.fixturenames:
        return
    from harness.engine.api import FAMILY_ATTRIBUTE, FAMILY_ERROR
    from harness.core.config import check_claim

    problems = metafunc.config.stash.setdefault(USAGE_PROBLEMS_KEY, [])
    error = getattr(metafunc.function, FAMILY_ERROR, None)
    family = getattr(metafunc.function, FAMILY_ATTRIBUTE, None) or getattr(metafunc.module, "CLAIM_FAMILY", None)
    if error or family is None:
        problems.append(error or f"{metafunc.module.__name__}::{metafunc.function.__name__} takes `claim` but names "
                                 "no family: decorate it with @harness.claim_family(\"name\", params={...})")
        metafunc.parametrize("claim", [], indirect=True)
        return
    profile = get_profile(metafunc.config)
    specs = profile.claims_of(family)
    for spec in specs:
        try:
            check_claim(spec, profile)  # a researcher's family is registered only now, by its module
        except HarnessError as exc:
            problems.append(str(exc))
    # Indirect: the `claim` fixture hands the test the claim on its followed features (re-validation).
    metafunc.parametrize("claim", specs, ids=[spec.name for spec in specs], indirect=True)


FOLLOWED_KEY = pytest.StashKey[list]()


@pytest.fixture
def claim(request):
    """The declared claim; after an SAE update the same claim on the features followed into the new SAE
    by decoder cosine from a --baseline (harness.entry.revalidation). A named feature with no match, or
    whose ids count from an SAE this run cannot follow from, makes the claim "not evaluated", with what
    to do next."""
    spec = request.param
    run = get_run(request.config)
    guarded_setup(request.config, "the declared features in this run's SAEs", lambda: run.followed)
    if not run.followed:
        return _above_size_floor(request, spec)  # every SAE is the one the profile's ids count from
    followed, used = run.follow_spec(spec)
    floor = run.profile.analysis.follow_min_cosine
    request.node.stash[FOLLOWED_KEY] = [m.as_dict() | {"text": m.describe(floor)} for m in used]
    missing = [m for m in used if not m.matched]
    from harness.core.families import get_family

    family = get_family(spec.family)
    declared = run.declared_profile.anchors.coarse
    if family is not None and family.needs_anchors and declared:
        # A claim on "the anchors" (the gate, facets, steering): its record names how they were followed. The
        # gate needs one left; a claim on the top anchor must not move silently to the next one.
        anchors = [run.followed[f"coarse-{a}"] for a in declared if f"coarse-{a}" in run.followed]
        request.node.stash[FOLLOWED_KEY] += [m.as_dict() | {"text": m.describe(floor)} for m in anchors
                                             if m not in used]
        top = run.followed.get(f"coarse-{declared[0]}")
        if not run.profile.anchors.coarse:
            missing += [m for m in anchors if not m.matched and m not in missing]
        elif not family.go_rule and top is not None and not top.matched and top not in missing:
            missing.append(top)
    if missing:
        below_floor = any(not m.why for m in missing)
        pytest.fail("; ".join(m.describe(floor) for m in missing)
                    + (" in this run's SAE: the updated SAE has no feature close enough to it; re-run "
                       "`python -m harness discover` to pick anchors on it" if below_floor else ""), pytrace=False)
    return _above_size_floor(request, followed)


def _above_size_floor(request, spec):
    """Too few prompts is not evidence: a claim whose family's prompt groups fall below
    `analysis.min_group_size` is "not evaluated" before its test runs (any family, built in or not)."""
    from harness.engine.claims_engine import too_little_data

    analysis = request.getfixturevalue("analysis")
    small = too_little_data(spec, analysis)
    if small is not None:
        request.node.stash[RECORD_KEY] = small
        pytest.fail(small.message, pytrace=False)
    return spec


def _collected_everything(config: pytest.Config) -> bool:
    """True unless the command line named single files or test ids (then other families' modules were
    never imported, and their claims are simply not run)."""
    return not any("::" in arg or Path(arg).is_file() for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A family the profile declares no claims for is deselected, not skipped: nothing was claimed.
    A declared family that no collected module registers is a usage error (a typo, or a missing module)."""
    from harness.core.families import get_family, registered_families

    problems = config.stash.get(USAGE_PROBLEMS_KEY, [])
    if problems:
        raise pytest.UsageError(problems[0])
    if PROFILE_KEY in config.stash and _collected_everything(config) and any(
            "claim" in getattr(item, "fixturenames", ()) for item in items):
        unknown = sorted({spec.family for spec in config.stash[PROFILE_KEY].claims if get_family(spec.family) is None})
        if unknown:
            where = [spec.origin for spec in config.stash[PROFILE_KEY].claims if spec.family == unknown[0]][0]
            raise pytest.UsageError(
                f"{where}: claim family {unknown[0]!r} is registered by no module in the collected claims; "
                f"registered: {', '.join(registered_families())} (a module registers one with "
                f"@harness.claim_family({unknown[0]!r}, params={{...}}))")

    def unclaimed(item: pytest.Item) -> bool:
        if "claim" not in getattr(item, "fixturenames", ()):
            return False
        return any("empty parameter set" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skip"))

    if PROFILE_KEY in config.stash:
        # Under `-n N --dist loadgroup` the claims that share a model and SAEs run on one worker, so a
        # large model loads once, not once per worker.
        profile = config.stash[PROFILE_KEY]
        group = "|".join([profile.model.name, *(f"{r}={c.release or c.path or c.source}/{c.sae_id}"
                                                 for r, c in sorted(profile.saes.items()))])
        for item in items:
            if "claim" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
    dropped = [item for item in items if unclaimed(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not unclaimed(item)]
        if PROFILE_KEY in config.stash:
            from harness.engine.api import FAMILY_ATTRIBUTE

            families = sorted({getattr(getattr(item, "function", None), FAMILY_ATTRIBUTE, None) or item.name
                               for item in dropped})
            profile = config.stash[PROFILE_KEY]
            config.stash[UNCLAIMED_KEY] = (
                f"claims: {len(dropped)} test(s) deselected: profile {profile.name!r} (from "
                f"{config.stash.get(SOURCE_KEY, 'a test')}) declares no claims of famil{'ies' if len(families) > 1 else 'y'} "
                f"{', '.join(map(repr, families))}; declare them in a profile's [[claims]] and pass it with --profile")


UNCLAIMED_KEY = pytest.StashKey[str]()


def pytest_report_collectionfinish(config: pytest.Config, start_path, items) -> list[str]:
    """Why a claims module ran nothing: its family has no claims in this run's profile."""
    return [config.stash[UNCLAIMED_KEY]] if UNCLAIMED_KEY in config.stash else []


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
                             statistic_name="error", statistic=None, threshold=None, passed=False,
                             verdict="not evaluated", gating=spec.is_gating, role=spec.role,
                             reason=f"could not be evaluated: {message.splitlines()[0][:300] if message else 'error'}")
    if "steering_study" in getattr(item, "fixturenames", ()) and RUN_KEY in item.config.stash:
        summary = item.config.stash[RUN_KEY].steering_for_ledger()
        if summary:
            import json

            report.user_properties.append((STEERING_PROPERTY, json.dumps(summary, default=float)))
    followed = item.stash.get(FOLLOWED_KEY, None)
    if record is not None and followed and call.when == "call":
        moved = [m["text"] for m in followed if m["new"] is not None and not m["same_id"]]
        details = {**record.details, "followed": followed}
        reason = (f"tested on the followed feature{'s' * (len(moved) > 1)} {'; '.join(moved)}: {record.reason}"
                  if moved else record.reason)
        record = record.model_copy(update={"details": details, "reason": reason})
    elif record is not None and followed:
        record = record.model_copy(update={"details": {**record.details, "followed": followed}})
    if record is not None:
        update = {"duration_s": round(report.duration, 3), "nodeid": item.nodeid}
        if report.failed and record.verdict == "held":  # the test body failed after recording a held claim
            update.update(passed=False, verdict="not evaluated",
                          reason=f"the test failed after recording: {record.reason}")
        record = record.model_copy(update=update)
        report.user_properties.append((PROPERTY, record.model_dump_json()))
    return report


def not_run_reason(family_name: str) -> str:
    from harness.core.families import get_family
    from harness.core.paths import BUILTIN_CLAIMS_DIR

    family = get_family(family_name)
    built_in = family is not None and family.origin.split("::")[0] in {
        path.name for path in BUILTIN_CLAIMS_DIR.glob("test_*.py")}
    where = ("its module is a built-in one that was not collected: add --builtin-claims to run the built-in claims "
             "beside yours" if built_in else f"no collected module for family {family_name!r}")
    return f"not run in this session (deselected with -k, stopped by -x or -m, or {where})"


class ClaimsSession:
    """Collects records from test reports and writes the ledger once, at the end (controller only)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: dict[str, ClaimRecord] = {}
        self.collected_claims = 0
        self.steering: dict = {}  # from a worker's report under xdist
        self.claim_modules: dict[str, set[str]] = {}  # family -> the test files whose claims reported it
        self.summary: tuple | None = None
        self.blocking_failures = 0  # failed tests other than findings (claims that do not gate)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected_claims = sum(1 for item in session.items if "claim" in getattr(item, "fixturenames", ()))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            finding = False
            for name, value in report.user_properties:
                if name == PROPERTY:
                    finding = not ClaimRecord.model_validate_json(value).gating
            self.blocking_failures += not finding
        for name, value in report.user_properties:
            if name == PROPERTY:
                record = ClaimRecord.model_validate_json(value)
                self.records[record.id] = record
                self.claim_modules.setdefault(record.family, set()).add(report.nodeid.split("::")[0])
            elif name == STEERING_PROPERTY:
                import json

                self.steering = json.loads(value)

    def register_reported_families(self) -> None:
        """Under xdist the controller collects nothing: a researcher's family is registered only on the
        workers. Import the modules whose claims reported a family the controller does not know, so
        that its order, its report section (`report=`), its stored data (`tables=`) and the features it
        names (followed after an SAE update) reach the ledger as in a serial run."""
        import importlib.util
        import sys

        from harness.core.families import get_family

        root = Path(str(self.config.rootpath))
        for family, modules in sorted(self.claim_modules.items()):
            if get_family(family) is not None:
                continue
            for module in sorted(modules):
                path = root / module
                name = f"sae_claims_controller.{path.stem}"
                if not path.is_file() or name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                loaded = importlib.util.module_from_spec(spec)
                sys.modules[name] = loaded
                try:
                    spec.loader.exec_module(loaded)
                except Exception:  # noqa: BLE001 - the workers ran it; at worst the section is the generic one
                    sys.modules.pop(name, None)

    def declared_records(self) -> tuple[list[ClaimRecord], bool]:
        """A record for every declared claim: those not run in this session are 'not evaluated'."""
        records = dict(self.records)
        partial = False
        for spec in get_profile(self.config).claims:
            if spec.claim_id not in records:
                partial = True
                records[spec.claim_id] = ClaimRecord(
                    id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name="not run",
                    statistic=None, threshold=None, passed=False, verdict="not evaluated", gating=spec.is_gating,
                    role=spec.role, reason=not_run_reason(spec.family))
        from harness.outputs.ledger import claim_order

        return sorted(records.values(), key=claim_order), partial

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput"):  # xdist worker: the controller writes
            return
        self.register_reported_families()
        if SETUP_FAILED_KEY in self.config.stash or exitstatus in (pytest.ExitCode.USAGE_ERROR,
                                                                   pytest.ExitCode.INTERRUPTED,
                                                                   pytest.ExitCode.INTERNAL_ERROR):
            return  # nothing trustworthy to write; the old report stays as it was
        if not self.collected_claims and not self.records:
            return  # not a claims session (e.g. `pytest tests/`)
        from harness.outputs.ledger import decide_verdict

        records, partial = self.declared_records()
        verdict, reason = decide_verdict(records)
        if partial:
            reason = f"partial run: {reason}"
        if verdict != "GO" and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a partial or empty run is never GO
        elif (verdict == "GO" and session.exitstatus == pytest.ExitCode.TESTS_FAILED
              and not self.blocking_failures):
            session.exitstatus = pytest.ExitCode.OK  # only findings failed: reported beside the gate
        from harness.outputs.ledger import findings_summary

        counts = findings_summary(records)
        gate_record = next((c for c in records if c.role == "gate"), None)
        control = (gate_record.details.get("control") if gate_record is not None else None) or None
        index, diff = None, None
        out = self.config.getoption("claims_html")
        baseline = self.config.getoption("claims_baseline")
        if out or baseline:
            from harness.entry.session import write_outputs
            from harness.outputs.ledger import diff_ledgers, read_ledger

            run = get_run(self.config)
            for record in records:
                run.record(record)
            ledger = run.ledger(exit_status=int(session.exitstatus),
                                steering=run.steering_for_ledger() or self.steering)
            ledger = ledger.model_copy(update={"partial": partial, "verdict_reason": reason,
                                               "gate": {**ledger.gate, "reason": reason},
                                               "profile_source": self.config.stash.get(SOURCE_KEY, "")})
            if baseline:
                diff = diff_ledgers(ledger, read_ledger(baseline))
                ledger = ledger.model_copy(update={"diff": diff})
            if out:
                index = str(write_outputs(ledger, Path(out), baseline=Path(baseline) if baseline else None))
        self.summary = (verdict, reason, index, counts, control, diff)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if SETUP_FAILED_KEY in config.stash:
            terminalreporter.section("claims verdict")
            code = config.stash.get(SETUP_EXIT_KEY, EXIT_SETUP_FAILED)
            label = "USAGE ERROR" if code == pytest.ExitCode.USAGE_ERROR else "SETUP FAILED"
            terminalreporter.write_line(f"{label} (exit {code}): {config.stash[SETUP_FAILED_KEY]}",
                                        bold=True, red=True)
            terminalreporter.write_line("no verdict; --html was left untouched")
            return
        if not self.summary:
            return
        verdict, reason, index, counts, control, diff = self.summary
        terminalreporter.section("claims verdict")
        terminalreporter.write_line(f"GATE {verdict}: {reason}", bold=True, green=verdict == "GO",
                                    red=verdict != "GO")
        if control is not None:
            terminalreporter.write_line("  random-SAE control: " + ("GO (so GO is refused)" if control["verdict"] == "held"
                                                                    else "NO-GO, as it should be"))
        for line in sequential_header(config.stash[PROFILE_KEY]) if PROFILE_KEY in config.stash else []:
            terminalreporter.write_line("  " + line)
        for phase, tally in counts.items():
            if any(tally.values()):
                text = ", ".join(f"{n} {v}" for v, n in tally.items() if n)
                terminalreporter.write_line(f"findings, {phase} (never gate): {text}")
        if any(n for tally in counts.values() for v, n in tally.items() if v != "held"):
            terminalreporter.write_line("  (a finding that did not hold shows as a failed test above; the exit "
                                        f"status is the gate's: {'0, GO' if verdict == 'GO' else '1, NO-GO'})")
        if diff:
            from harness.outputs.ledger import diff_lines

            for line in diff_lines(diff):
                terminalreporter.write_line(line)
        if index:
            terminalreporter.write_line(f"report: {index}")
            terminalreporter.write_line(f"ledger: {Path(index).with_name('claims.json')}")
