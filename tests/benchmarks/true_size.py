"""Wall time and peak memory per stage of a claims run at a profile's true sizes, on this machine.

    HF_HOME=DIR HF_HUB_OFFLINE=1 python tests/benchmarks/true_size.py --profile gemma-2-2b \\
        --per-set 8 --out reports/true-size.json

Runs the engine's own functions in the order the main job does (SAEs, model, feature tables with the
per-stage clock of compute_feature_tables, every non-steering claim, report) on the first `--per-set`
prompts of each set, and prints a Markdown table: seconds, seconds per prompt (or per token), RSS at
the end of the stage and the process's peak RSS so far. With `--per-set 0` every prompt is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

GIB = 2**30


def rss_now() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / GIB


def rss_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux reports KiB


class AnonymousPeak:
    """Peak anonymous RSS (RssAnon: the process's own memory, without file pages it maps, such as a
    checkpoint transformers reads through mmap), sampled every 50 ms; reset per stage."""

    def __init__(self):
        import threading

        self.peak = 0.0
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.now())

    @staticmethod
    def now() -> float:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024 / GIB
        return 0.0

    def take(self) -> float:
        value, self.peak = max(self.peak, self.now()), self.now()
        return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="gemma-2-2b")
    parser.add_argument("--per-set", type=int, default=8, help="prompts per set (0: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from harness.core.config import load_profile
    from harness.engine.claims_engine import evaluate
    from harness.entry.session import ClaimsRun, write_outputs
    from harness.features.tables import compute_feature_tables, load_sae
    from harness.world.model import load_model
    from harness.world.prompts import load_prompt_sets

    rows: list[dict] = []
    anonymous = AnonymousPeak()

    @contextmanager
    def stage(name: str, **info):
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield info
        rows.append({"stage": name, "seconds": round(time.perf_counter() - start, 1),
                     "rss_gib": round(rss_now(), 2), "peak_rss_gib": round(rss_peak(), 2),
                     "peak_anon_gib": round(anonymous.take(), 2), **info})
        print(f"    {rows[-1]}", file=sys.stderr, flush=True)

    profile = load_profile(args.profile)
    sets = load_prompt_sets(profile)
    if args.per_set:
        sets = dataclasses.replace(sets, **{name: getattr(sets, name)[: args.per_set]
                                            for name in ("concept", "neutral", "near_miss")})
    n_prompts = len(sets.all())
    torch.set_grad_enabled(False)

    run = ClaimsRun(profile, progress=True)
    run.__dict__["prompt_sets"] = sets
    run.__dict__["device"] = args.device
    with stage("load SAEs (SAE.from_pretrained)") as info:
        saes = {role: load_sae(cfg, profile.model.d_model, device=args.device, hook=profile.model.hook)
                for role, cfg in profile.saes.items()}
        info["weights_gib"] = round(sum(p.numel() * p.element_size() for s in saes.values()
                                        for p in s.parameters()) / GIB, 2)
    run.__dict__["saes"] = saes
    with stage("load model (TransformerBridge)") as info:
        model = load_model(profile.model, device=args.device)
        info["weights_gib"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / GIB, 2)
    run.__dict__["model"] = model

    timings: dict[str, float] = {}
    anonymous.take()
    start = time.perf_counter()
    tables = compute_feature_tables(model, saes, profile, sets, timings=timings, progress=True)
    tables.key = "benchmark"
    run.__dict__["tables"] = tables
    n_tokens = int(tables.n_tokens.sum())
    for name, seconds in timings.items():
        rows.append({"stage": f"  {name}", "seconds": round(seconds, 1), "rss_gib": None,
                     "peak_rss_gib": None, "peak_anon_gib": None})
    rows.append({"stage": "feature tables (the stages above)", "seconds": round(time.perf_counter() - start, 1),
                 "rss_gib": round(rss_now(), 2), "peak_rss_gib": round(rss_peak(), 2),
                 "peak_anon_gib": round(anonymous.take(), 2)})

    with stage("analysis: every non-steering claim") as info:
        records = [evaluate(spec, run.analysis) for spec in profile.claims if spec.family != "steering"]
        for record in records:
            run.record(record)
        info["claims"] = len(records)
    with stage("report (ledger + HTML)") as info:
        out = Path(tempfile.mkdtemp(prefix="true-size-report-"))
        ledger = run.ledger(exit_status=None)
        write_outputs(ledger, out)
        info["report_mib"] = round((out / "index.html").stat().st_size / 2**20, 2)
        info["ledger_mib"] = round((out / "claims.json").stat().st_size / 2**20, 2)

    weights = sum(r.get("weights_gib", 0) for r in rows)
    peak_anon = max(r["peak_anon_gib"] or 0 for r in rows)
    summary = {"profile": profile.name, "prompts": n_prompts, "kept_tokens": n_tokens, "device": args.device,
               "torch_threads": torch.get_num_threads(), "weights_gib": round(weights, 2),
               "peak_rss_gib": round(rss_peak(), 2), "peak_minus_weights_gib": round(rss_peak() - weights, 2),
               "peak_anon_gib": peak_anon, "peak_anon_minus_weights_gib": round(peak_anon - weights, 2),
               "stand_in": ledger.stand_in, "rows": rows,
               "l0": {role: round(tables.l0(role), 1) for role in tables.pooled}}
    print(f"\n{profile.name}: {n_prompts} prompts, {n_tokens} kept tokens, {args.device}, "
          f"{torch.get_num_threads()} threads\n")
    def cell(value) -> str:
        return "" if value is None else f"{value:.2f}"

    print("| stage | seconds | per prompt (s) | RSS after (GiB) | peak anonymous RSS in stage (GiB) | "
          "peak RSS so far (GiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['stage']} | {row['seconds']:.1f} | {row['seconds'] / n_prompts:.2f} | {cell(row['rss_gib'])} | "
              f"{cell(row['peak_anon_gib'])} | {cell(row['peak_rss_gib'])} |")
    print(f"\nweights {weights:.2f} GiB; peak anonymous RSS {peak_anon:.2f} GiB (weights + {peak_anon - weights:.2f}); "
          f"peak RSS {rss_peak():.2f} GiB (weights + {rss_peak() - weights:.2f}, with the checkpoint's mapped pages); "
          f"L0 {summary['l0']}; report {rows[-1]['report_mib']} MiB")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
