"""`python -m harness COMMAND`: info, train-saes, discover, ceilings, report, calibrate, calibration-tables, stand-in, schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.core.errors import HarnessError


def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="smollm2-135m", help="profile name or path to a .toml "
                        "(default: smollm2-135m)")


def cmd_info(args) -> int:
    from harness.core.config import load_profile
    from harness.world.prompts import load_prompt_sets

    profile = load_profile(args.profile)
    prompts = load_prompt_sets(profile)
    info = {
        "profile": profile.name, "model": profile.model.name, "source": profile.model.source,
        "hook": profile.model.hook, "n_layers": profile.model.n_layers, "d_model": profile.model.d_model,
        "prompts": {name: len(getattr(prompts, name)) for name in ("concept", "neutral", "near_miss")},
        "anchors": {"coarse": list(profile.anchors.coarse), "fine": list(profile.anchors.fine),
                    "source": profile.anchors.source, "split": profile.anchors.split},
        "claims": len(profile.claims), "saes": {},
    }
    for role, cfg in profile.saes.items():
        entry = {"source": cfg.source, "d_sae": cfg.d_sae}
        if cfg.source == "pretrained":
            entry.update(release=cfg.release, sae_id=cfg.sae_id)
        if cfg.source == "local":
            provenance = cfg.local_path.parent / "provenance.json"
            record = json.loads(provenance.read_text()).get("saes", {}).get(role, {}) if provenance.is_file() else {}
            quality = record.get("quality", {})
            entry.update({key: quality.get(key) for key in ("l0", "explained_variance", "ce_loss_score",
                                                            "dead_fraction")})
            entry["trained_tokens"] = record.get("tokens_seen")
            entry["measured_on"] = "held-out corpus text (provenance.json)" if quality else "not trained yet"
        info["saes"][role] = entry
    print(json.dumps(info, indent=2))
    return 0


def cmd_train_saes(args) -> int:
    from harness.core.config import load_profile
    from harness.world.prompts import all_prompt_texts
    from harness.world.training import train_saes, training_targets

    profile = load_profile(args.profile, require_anchors=False)
    if profile.model.source != "smollm2-gguf":
        raise HarnessError(f"train-saes trains SAEs on the embedded model; profile {profile.name!r} loads "
                           f"its model from {profile.model.source!r}")
    roles = tuple(dict.fromkeys(r.strip() for r in args.roles.split(",") if r.strip())) or ("coarse", "fine")
    for role in roles:
        if role not in ("coarse", "fine"):
            raise HarnessError(f"--roles: unknown role {role!r}; valid choices: 'coarse', 'fine'")
    if args.tokens < 4096:
        raise HarnessError(f"--tokens {args.tokens} is below one training batch (4,096 tokens)")
    if args.seed < 0:
        raise HarnessError(f"--seed {args.seed} must be >= 0")
    if args.heldout_tokens < 512:
        raise HarnessError(f"--heldout-tokens {args.heldout_tokens} is too few to measure quality; use >= 512")
    out = Path(args.out).expanduser() if args.out else None
    targets = training_targets(profile, roles, out, args.overwrite)  # refused here, before the model loads
    print("[train-saes] will write: " + ", ".join(f"{role} -> {path}" for role, path in targets.items()),
          file=sys.stderr, flush=True)
    result = train_saes(profile, tokens=args.tokens, seed=args.seed, device=args.device, roles=roles,
                        forbidden_prompts=all_prompt_texts(profile), out_root=out, overwrite=args.overwrite,
                        heldout_tokens=args.heldout_tokens)
    print(json.dumps(result, indent=2))
    return 0


def cmd_discover(args) -> int:
    from harness.core.config import anchors_path, load_profile
    from harness.core.paths import PROFILES_DIR
    from harness.entry.discovery import write_discovery
    from harness.entry.session import ClaimsRun

    from harness.core.config import with_overrides
    from harness.entry.preflight import preflight

    def absolute(value):
        return str(Path(value).resolve()) if value else None

    profile = with_overrides(load_profile(args.profile, require_anchors=False), concept=absolute(args.concept_prompts),
                             neutral=absolute(args.neutral_prompts), near_miss=absolute(args.near_miss_prompts))
    preflight(profile)  # bad prompt files or SAE folders fail here, before the model loads
    if profile.path is not None and profile.path.resolve().parent == PROFILES_DIR.resolve() and not args.overwrite:
        raise HarnessError(f"discover writes {anchors_path(profile.path).name} beside the packaged profile "
                           f"{profile.name!r}; pass --overwrite to replace its anchors, or run it on a profile of your own "
                           "(a .toml that extends it)")
    path, found = write_discovery(ClaimsRun(profile, ce_loss=False))  # discovery needs activations only
    print(json.dumps({"written": path, "anchors": found["anchors"], "loud": found["loud"], "counts": found["counts"],
                      "discovery_table": found["discovery_table"]}, indent=2))
    counts = found["counts"]
    print(f"discover: {counts['candidates']} candidate coarse features, {counts['beat_neutral']} beat neutral, "
          f"{counts['beat_both']} beat neutral and near-miss; anchors {found['anchors']['coarse']} written to {path}\n"
          f"now: python -m pytest claims/ --html=reports/ --profile {profile.path or profile.name}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from harness.outputs.report import render_report

    from pydantic import ValidationError

    from harness.outputs.ledger import read_ledger

    ledger = Path(args.ledger)
    if args.out and Path(args.out).is_dir():
        raise HarnessError(f"--out {args.out!r} is a folder; give a file name (e.g. {Path(args.out) / 'index.html'})")
    for what, path in (("ledger", ledger), ("--baseline", Path(args.baseline) if args.baseline else None)):
        if path is None:
            continue
        if not path.is_file():
            raise HarnessError(f"{what} {str(path)!r} does not exist")
        try:
            read_ledger(path)
        except (OSError, UnicodeDecodeError, ValueError, ValidationError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HarnessError(f"{what} {str(path)!r} is not a claims ledger ({first})") from exc
    out = Path(args.out) if args.out else ledger.with_name("index.html")
    render_report(ledger, out, baseline=args.baseline)
    print(out)
    return 0


def cmd_calibrate(args) -> int:
    from harness.engine.calibration import Settings, calibrate, format_table, merge_rows, select_conditions
    from harness.core.paths import atomic_write_text

    if args.datasets < 1:
        raise HarnessError(f"--datasets {args.datasets} must be >= 1")
    if args.permutations < 99 or args.bootstrap < 99:
        raise HarnessError(f"--permutations {args.permutations} and --bootstrap {args.bootstrap} must be >= 99")
    if not 0 < args.alpha < 1:
        raise HarnessError(f"--alpha {args.alpha} must lie in (0, 1)")
    families = [f for f in args.families.split(",") if f] if args.families else None
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else None
    select_conditions(families, only)  # names checked before any work
    stored = []
    if args.out and Path(args.out).exists():
        try:
            stored = json.loads(Path(args.out).read_text())
            if not (isinstance(stored, list) and all(isinstance(r, dict) and {"family", "condition"} <= set(r)
                                                     for r in stored)):
                raise ValueError("not a list of calibration rows")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HarnessError(f"--out {args.out!r} exists but is not a calibration file ({exc}); "
                               "name a new file or a calibration JSON to update") from exc
    settings = Settings(n_permutations=args.permutations, n_bootstrap=args.bootstrap, alpha=args.alpha)
    rows = calibrate(n_datasets=args.datasets, seed=args.seed, settings=settings, families=families, only=only)
    print(format_table(rows))
    if args.out:
        # An existing file keeps its other rows: `--only` re-runs one row of the stored table.
        atomic_write_text(Path(args.out), json.dumps(merge_rows(stored, rows), indent=1) + "\n")
    # A boundary false-positive rate above its limit is a defect of the engine; low power is a finding.
    return 0 if all(r["ok"] for r in rows if "fpr" in r) else 1


def cmd_calibration_tables(args) -> int:
    from harness.core.paths import FIXTURES_DIR, atomic_write_text
    from harness.engine.calibration import render_tables

    rows_path = Path(args.rows) if args.rows else FIXTURES_DIR / "calibration" / "calibration.json"
    doc = Path(args.doc)
    for path in (rows_path, doc):
        if not path.is_file():
            raise HarnessError(f"{str(path)!r} is not a file")
    text = doc.read_text()
    new = render_tables(text, json.loads(rows_path.read_text()))
    if args.check:
        if new != text:
            print(f"{doc}: its calibration tables differ from {rows_path}; run without --check to rewrite them")
            return 1
        print(f"{doc}: calibration tables match {rows_path}")
        return 0
    if new != text:
        atomic_write_text(doc, new)
    print(f"{doc}: calibration tables {'rewritten' if new != text else 'already up to date'} from {rows_path}")
    return 0


def cmd_stand_in(args) -> int:
    import errno

    from harness.core.config import load_profile
    from harness.core.paths import unwritable_reason
    from harness.entry.stand_in import write_stand_in

    out = Path(args.dir)
    if args.seed < 0:
        raise HarnessError(f"--seed {args.seed} must be >= 0")
    if out.exists() and not out.is_dir():
        raise HarnessError(f"stand-in DIR {args.dir!r} is a file; give a folder (it becomes HF_HOME)")
    if (out / "hub").exists() and not (out / "hub").is_dir():
        raise HarnessError(f"stand-in DIR {args.dir!r} holds a file named 'hub' where the hub cache goes; "
                           "move it or give another folder")
    profile = load_profile(args.profile, require_anchors=False)
    _, problem = unwritable_reason(out.resolve())
    if problem:
        raise HarnessError(f"stand-in DIR {args.dir!r} is not writable ({problem})")
    try:
        summary = write_stand_in(profile, out, seed=args.seed, progress=True)
    except OSError as exc:
        hint = "; free some space and run it again (finished files are kept)" if exc.errno == errno.ENOSPC else ""
        raise HarnessError(f"stand-in could not write {exc.filename or args.dir!r}: {exc.strerror}{hint}") from exc
    print(json.dumps(summary, indent=2))
    print(f"\nnow: HF_HOME={out.resolve()} HF_HUB_OFFLINE=1 python -m pytest claims/ --html=reports/ "
          f"--profile {args.profile}", file=sys.stderr)
    return 0


def cmd_ceilings(args) -> int:
    from harness.core.config import load_profile
    from harness.entry.preflight import check_local_saes
    from harness.features.tables import profile_ceilings

    if args.tokens < 512:
        raise HarnessError(f"--tokens {args.tokens} is too few to find a feature's largest activation; use >= 512")
    profile = load_profile(args.profile, require_anchors=False)
    check_local_saes(profile)  # a broken SAE folder fails here, before the model loads
    print(json.dumps(profile_ceilings(profile, tokens=args.tokens, overwrite=args.overwrite, device=args.device),
                     indent=2))
    return 0


def cmd_schema(args) -> int:
    from harness.outputs.ledger import ledger_schema

    print(json.dumps(ledger_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="print the profile's model, hook, prompt counts and SAE quality as JSON")
    _profile_arg(info)
    info.set_defaults(func=cmd_info)

    train = sub.add_parser(
        "train-saes", help="train coarse and fine TopK SAEs on the embedded model (into --out or the profile's folders)",
        description="Train the profile's coarse and fine TopK SAEs on the embedded model's residual stream. "
        "Each SAE goes to DIR/<role> with --out DIR, else to the profile's saes.<role>.path. A folder that "
        "already holds an SAE (such as the repository's packaged ones) is replaced only with --overwrite. "
        "Progress: residual capture in tokens, then one bar step per training step; the folders written are "
        "named at the end, with provenance.json beside them.")
    _profile_arg(train)
    train.add_argument("--out", default=None, metavar="DIR", help="write DIR/coarse, DIR/fine and DIR/provenance.json "
                       "(default: the profile's saes.<role>.path)")
    train.add_argument("--overwrite", action="store_true", help="replace an SAE that is already in the target folder")
    train.add_argument("--tokens", type=int, default=1_200_000, help="training tokens (default 1,200,000)")
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--heldout-tokens", type=int, default=40_000,
                       help="held-out tokens the quality numbers are measured on (default 40,000)")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.add_argument("--roles", default="", help="comma list of coarse,fine (default both)")
    train.set_defaults(func=cmd_train_saes)

    discover = sub.add_parser("discover", help="pick anchors on the discovery half; write them as pre-registered claims")
    _profile_arg(discover)
    for name in ("concept", "neutral", "near-miss"):
        discover.add_argument(f"--{name}-prompts", default=None, metavar="FILE",
                              help=f"JSONL of {name} prompts instead of the profile's (as for pytest claims/)")
    discover.add_argument("--overwrite", action="store_true", help="allow replacing a packaged profile's anchors file")
    discover.set_defaults(func=cmd_discover)

    report = sub.add_parser("report", help="re-render a claims.json into HTML without running anything")
    report.add_argument("ledger")
    report.add_argument("--baseline", default=None, help="a previous claims.json to diff against")
    report.add_argument("--out", default=None, help="output HTML (default: index.html beside the ledger)")
    report.set_defaults(func=cmd_report)

    calibrate = sub.add_parser("calibrate", help="false-positive rate at each claim's boundary and power, "
                               "through the engine's own functions, on synthetic data with a planted truth")
    calibrate.add_argument("--datasets", type=int, default=1000, help="datasets per condition (default 1,000)")
    calibrate.add_argument("--permutations", type=int, default=199, help="label shuffles per test (default 199)")
    calibrate.add_argument("--bootstrap", type=int, default=999, help="bootstrap resamples per interval (default 999)")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--alpha", type=float, default=0.05)
    calibrate.add_argument("--families", default="", help="comma list of families (default: all)")
    calibrate.add_argument("--only", default="", help="comma list of FAMILY/CONDITION rows, e.g. "
                           "selectivity/boundary (default: every row of the chosen families)")
    calibrate.add_argument("--out", default=None, help="write the rows as a JSON list here; an existing "
                           "calibration file keeps its other rows (the new ones replace theirs)")
    calibrate.set_defaults(func=cmd_calibrate)

    tables = sub.add_parser("calibration-tables", help="regenerate the calibration tables marked in a markdown file "
                            "(<!-- calibration-table: FAMILIES -->) from the stored rows")
    tables.add_argument("doc", help="the markdown file, e.g. docs/findings.md")
    tables.add_argument("--rows", default=None, help="calibration JSON (default: the packaged "
                        "fixtures/calibration/calibration.json)")
    tables.add_argument("--check", action="store_true", help="only say whether the tables match (exit 1 if not)")
    tables.set_defaults(func=cmd_calibration_tables)

    stand_in = sub.add_parser("stand-in", help="write an offline Hugging Face cache (HF_HOME) holding the profile's "
                              "model and Gemma Scope SAEs with random weights at their real shapes")
    _profile_arg(stand_in)
    stand_in.add_argument("dir", metavar="DIR", help="the folder to use as HF_HOME (the hub cache goes in DIR/hub)")
    stand_in.add_argument("--seed", type=int, default=0)
    stand_in.set_defaults(func=cmd_stand_in)

    ceilings = sub.add_parser("ceilings", help="measure each SAE feature's largest activation on held-out corpus "
                              "text (the selectivity bound's ceiling); written beside local SAEs, else in the cache")
    _profile_arg(ceilings)
    ceilings.add_argument("--tokens", type=int, default=40_000, help="held-out tokens (default 40,000)")
    ceilings.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ceilings.add_argument("--overwrite", action="store_true", help="replace a packaged SAE's ceilings file")
    ceilings.set_defaults(func=cmd_ceilings)

    schema = sub.add_parser("schema", help="print the ledger's JSON Schema")
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
