"""Claim families: an open registry.

A family is a name, its parameters (type, default, valid values), whether its claims gate GO,
which prompt groups it tests, and its decision: the function that turns a claim and the session's
data into a record (the same function serves `pytest claims/`, calibration and discovery). Every
family, built in or a researcher's, is registered where it is written, with `harness.claim_family`
on its test function. The built-in ones are the modules of the built-in claims folder (`claims/` in
a checkout, `harness/builtin_claims/` when installed); the registry loads them on first lookup, by
path, as plugins: no harness module imports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.core.errors import ConfigError, choices_error

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()
FAMILY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check_type(where: str, value: Any, kind) -> None:
    """Strict TOML types: no string for a number, no float for an integer, no bool for either."""
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind, True)
    if not ok:
        raise ConfigError(f"{where} = {value!r} must be {TYPE_NAMES.get(kind, str(kind))}, got {type(value).__name__}")


@dataclass(frozen=True)
class Param:
    """One parameter of a claim family: its type, default (REQUIRED: none), valid values or range.

    `feature_of`: the value is a feature index of this SAE ("coarse", "fine", or "sae" for the SAE the
    claim's own `sae` parameter names), checked against the SAE's width before any model loads.
    """

    kind: type = float
    default: Any = REQUIRED
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    feature_of: str = ""
    help: str = ""
    # "bh": the anchor's sub-feature cutoff (pairs at or beyond it form the co-firing BH family);
    # "scan": a claim asks about pairs down to this cosine (they are tested, never in the BH family).
    pair_cutoff: str = ""

    def check(self, where: str, value: Any) -> None:
        if value is None and self.default is None:
            return
        check_type(where, value, self.kind)
        if self.choices and value not in self.choices:
            raise choices_error(where, value, self.choices)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            bounds = f"[{self.low}, {self.high}]" if self.high is not None and self.low is not None else (
                f">= {self.low}" if self.low is not None else f"<= {self.high}")
            raise ConfigError(f"{where} = {value!r} is out of range; valid: {bounds}")

    def describe(self) -> str:
        text = TYPE_NAMES.get(self.kind, getattr(self.kind, "__name__", str(self.kind)))
        if self.choices:
            text += f" in {list(self.choices)}"
        elif self.low is not None and self.high is not None:
            text += f" in [{self.low}, {self.high}]"
        elif self.low is not None:
            text += f" >= {self.low}"
        elif self.high is not None:
            text += f" <= {self.high}"
        return text + (" (required)" if self.default is REQUIRED else f" (default {self.default!r})")


def _both_halves(spec) -> tuple[str, ...]:
    return ("concept", "neutral")


PHASES = ("phase 1", "phase 2")


@dataclass(frozen=True)
class Family:
    name: str
    params: dict[str, Param] = field(default_factory=dict)
    gating: bool = False  # True: its claims must hold for GO besides the gate (built in: only go_gate)
    go_rule: bool = False  # True: its claim is the GO rule itself; a run without one has no GO (built in: go_gate)
    phase: str = "phase 1"  # "phase 2": a study that the GO decision starts (steering); never gates
    order: int = 100  # where its claims and report section come (built-in families 0-90; yours after)
    # pair_rule(pair, claim or None, alpha) -> {"category", "sub_feature"}: what a sub-feature is, for the
    # analysis's pair table (built in: the sub_features family); the claim is that family's claim on the anchor
    pair_rule: Callable | None = None
    tables: Callable | None = None  # tables(claims, analysis) -> dict merged into the ledger's tables
    report: Callable | None = None  # report(claims, ledger) -> a report Section (None: the generic section)
    groups: Callable[[Any], tuple[str, ...]] = _both_halves  # prompt groups a claim tests (size floor)
    evaluate: Callable | None = None  # the decision: (claim, analysis[, steering or control]) -> ClaimRecord
    needs_anchors: bool = False
    needs_steering: bool = False
    needs_control: bool = False  # evaluate(spec, analysis, control) gets the random-SAE control analysis
    origin: str = ""  # the registering function, as "file.py::name"
    doc: str = ""

    def check(self, where: str, params: dict[str, Any]) -> None:
        """Unknown and missing parameters, and each value's type and range: one ConfigError each."""
        for key in params:
            if key not in self.params:
                valid = ", ".join(f"{k}: {p.describe()}" for k, p in sorted(self.params.items())) or "none"
                raise ConfigError(f"{where}: unknown parameter {key!r} of family {self.name!r}; valid: {valid}")
        missing = [k for k, p in self.params.items() if p.default is REQUIRED and k not in params]
        if missing:
            raise ConfigError(f"{where} is missing parameters {missing} (family {self.name!r})")
        for key, value in params.items():
            self.params[key].check(f"{where}: {key}", value)

    def default(self, key: str) -> Any:
        if key not in self.params:
            raise KeyError(key)
        return self.params[key].default


_REGISTRY: dict[str, Family] = {}
_BUILTINS_LOADED = False


def load_builtin_families() -> None:
    """Import the built-in claim modules once (each registers its family). A checkout's `claims/` is
    loaded under the name harness.builtin_claims, so it never shadows a researcher's own `claims`."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from harness.core.paths import BUILTIN_CLAIMS_DIR, BUILTIN_CLAIMS_PACKAGE, import_shipped

    for path in sorted(BUILTIN_CLAIMS_DIR.glob("test_*.py")):
        import_shipped(BUILTIN_CLAIMS_PACKAGE, BUILTIN_CLAIMS_DIR, path.stem)



def register_family(name: str, params: dict[str, Param] | None = None, *, gating: bool = False,
                    groups: Callable | tuple[str, ...] | None = None, evaluate: Callable | None = None,
                    needs_anchors: bool = False, needs_steering: bool = False, needs_control: bool = False,
                    go_rule: bool = False, phase: str = "phase 1", order: int = 100,
                    pair_rule: Callable | None = None, tables: Callable | None = None,
                    report: Callable | None = None, origin: str = "", doc: str = "") -> Family:
    """Add a family to the registry. The same function registering again (its module imported under
    another name: pytest's collection of a built-in module, a copy, a reload) replaces its own entry;
    another function registering the same name is an error, so no one silently redefines another's."""
    if not isinstance(name, str) or not FAMILY_NAME.match(name):
        raise ConfigError(f"family name {name!r} must be lower-case letters, digits and _ (e.g. 'facet_cuisine')")
    params = dict(params or {})
    for key, param in params.items():
        if not isinstance(param, Param):
            raise ConfigError(f"family {name!r}: parameter {key!r} must be a harness.Param, got {param!r}")
        if param.pair_cutoff not in ("", "bh", "scan"):
            raise choices_error(f"family {name!r}: parameter {key!r} pair_cutoff", param.pair_cutoff, ["", "bh", "scan"])
    if phase not in PHASES:
        raise choices_error(f"family {name!r}: phase", phase, list(PHASES))
    if go_rule and phase != "phase 1":
        raise ConfigError(f"family {name!r}: the GO rule decides whether phase 2 starts; it cannot be {phase}")
    for hook, value in (("pair_rule", pair_rule), ("tables", tables), ("report", report)):
        if value is not None and not callable(value):
            raise ConfigError(f"family {name!r}: {hook} must be a function, got {value!r}")
    if isinstance(groups, tuple):
        fixed = groups
        groups = lambda spec: fixed  # noqa: E731
    existing = _REGISTRY.get(name)
    if existing is not None and existing.origin != origin:
        raise ConfigError(f"family {name!r} is already registered by {existing.origin or 'harness'}; "
                          f"choose another name (registered: {', '.join(sorted(_REGISTRY))})")
    family = Family(name=name, params=params, gating=gating, groups=groups or _both_halves, evaluate=evaluate,
                    needs_anchors=needs_anchors, needs_steering=needs_steering, needs_control=needs_control,
                    go_rule=go_rule, phase=phase, order=order, pair_rule=pair_rule, tables=tables, report=report,
                    origin=origin, doc=doc)
    _REGISTRY[name] = family
    return family


def get_family(name: str) -> Family | None:
    load_builtin_families()
    return _REGISTRY.get(name)


def registered_families() -> list[str]:
    load_builtin_families()
    return sorted(_REGISTRY)


def families_in_order() -> list[Family]:
    """Every registered family, in report order (`order`, then name)."""
    load_builtin_families()
    return sorted(_REGISTRY.values(), key=lambda f: (f.order, f.name))


def family_order(name: str) -> tuple[int, str]:
    """Where a family's claims sort: by its `order`; a family not registered here sorts last."""
    family = get_family(name)
    return (family.order if family is not None else 10_000, name)


def pair_rule_family() -> Family | None:
    """The family that says what a sub-feature is (its `pair_rule`); None when none is registered."""
    rules = [f for f in families_in_order() if f.pair_rule is not None]
    return rules[0] if rules else None


def require_family(name: str) -> Family:
    family = get_family(name)
    if family is None:
        raise choices_error("claim family", name, registered_families())
    return family
