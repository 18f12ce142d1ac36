"""`python -m harness COMMAND`: info, train-saes, discover, calibrate, report."""

from __future__ import annotations

import argparse
import json
import sys

from harness.errors import HarnessError


def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="smollm2-135m", help="profile name or path to a .toml")


def cmd_train_saes(args) -> int:
    from harness.config import load_profile
    from harness.prompts import all_prompt_texts
    from harness.training import train_saes

    profile = load_profile(args.profile)
    roles = tuple(args.roles.split(",")) if args.roles else ("coarse", "fine")
    provenance = train_saes(profile, tokens=args.tokens, seed=args.seed, device=args.device, roles=roles,
                            forbidden_prompts=all_prompt_texts(profile))
    print(json.dumps(provenance.get("saes", {}), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train-saes", help="rebuild the embedded profile's coarse and fine SAEs")
    _profile_arg(train)
    train.add_argument("--tokens", type=int, default=1_000_000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.add_argument("--roles", default="", help="comma list of coarse,fine (default both)")
    train.set_defaults(func=cmd_train_saes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
