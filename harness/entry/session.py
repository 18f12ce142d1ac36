"""One claims run: profile, prompts, SAEs, cached feature tables, analysis, and ledger assembly.

Shared by the pytest plugin and the CLI. Heavy things load lazily: a warm run (feature
tables cached) never loads the model unless a steering claim asks for it.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from harness.engine.analysis import Analysis
from harness.core.config import Profile
from harness.core.families import families_in_order
from harness.core.steering_result import SteeringResult
from harness.features.tables import cached_feature_tables, load_sae, sae_hash
from harness.outputs.ledger import (ClaimRecord, Ledger, SaeRecord, claim_order, decide_verdict, gate_summary, git_commit,
                                    new_run_id)
from harness.world.model import load_model, resolve_device
from harness.world.prompts import load_prompt_sets


def with_control(spec) -> bool:
    """Claims the random-SAE control re-evaluates: built-in Phase 1 families (not the gate, which runs its
    own control, and not steering, which needs a model study)."""
    from harness.core.families import get_family

    family = get_family(spec.family)
    return (family is not None and family.evaluate is not None and not family.needs_steering
            and not family.needs_control)


def on_control(spec, control: Analysis) -> dict:
    """The claim's verdict on the control, by the engine function that decided it on the real SAEs."""
    from harness.engine.claims_engine import evaluate
    from harness.core.errors import HarnessError

    try:
        record = evaluate(spec, control)
    except (HarnessError, ValueError, IndexError) as exc:
        return {"control_verdict": "not evaluated", "control_reason": f"{type(exc).__name__}: {exc}"[:300]}
    return {"control_verdict": record.verdict, "control_reason": record.reason}


def _valid_study(path: Path) -> SteeringResult | None:
    """A cached steering study, or None when it is not JSON, does not validate or holds NaN/inf."""
    import math

    from pydantic import ValidationError

    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None

    def finite(value) -> bool:
        if isinstance(value, float):
            return math.isfinite(value)
        if isinstance(value, dict):
            return all(finite(v) for v in value.values())
        if isinstance(value, list):
            return all(finite(v) for v in value)
        return True

    if not finite(study):
        return None
    try:
        return SteeringResult.model_validate(study)
    except ValidationError:
        return None




@dataclass
class ClaimsRun:
    profile: Profile
    progress: bool = True
    baseline: Path | None = None
    ce_loss: bool = True  # the CE-loss score (reconstruction claims); `discover` does not need it
    records: dict[str, ClaimRecord] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # role -> how its activation ceilings were measured in this run (the `ceilings` property fills it)
    ceilings_measured: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # `profile` becomes the profile on the followed features once `followed` has run (a baseline whose
        # SAE differs); `declared_profile` keeps the ids the profile was written with.
        self.declared_profile = self.profile

    def __repr__(self) -> str:
        return f"ClaimsRun(profile={self.profile.name!r}, records={len(self.records)})"

    @cached_property
    def baseline_ledger(self):
        from harness.outputs.ledger import read_ledger

        return read_ledger(self.baseline) if self.baseline is not None else None

    @cached_property
    def sae_hashes(self) -> dict[str, str]:
        """Each SAE's content hash, once per run (hashing reads the weights), taken after the tables so a
        hub SAE is hashed by the files it loaded from."""
        self.tables  # noqa: B018
        return {role: sae_hash(cfg) for role, cfg in self.profile.saes.items()}

    def baseline_declared_on(self, role: str) -> str | None:
        """The hash of the SAE the baseline's ids count from (its own SAE for ledgers that predate it)."""
        base = self.baseline_ledger
        if base is None or role not in base.saes:
            return None
        tables = base.tables if isinstance(base.tables, dict) else {}
        return tables.get("declared_on", {}).get(role) or base.saes[role].hash

    @cached_property
    def declared_on(self) -> dict[str, str]:
        """Per SAE role, the content hash of the SAE the profile's feature ids count from: the anchors'
        `sae_hashes` (written by discover), else the baseline's, else this run's SAE."""
        recorded = self.declared_profile.anchors.sae_hashes
        return {role: recorded.get(role) or self.baseline_declared_on(role) or self.sae_hashes[role]
                for role in self.profile.saes}

    @cached_property
    def followed(self) -> dict:
        """Declared features followed into SAEs other than the one their ids count from
        (harness.entry.revalidation): name -> FeatureMatch. Empty when every SAE is the one the ids count
        from. Without a baseline from a run on that SAE, its features cannot be followed: no match, with
        what to do."""
        from harness.entry.revalidation import (carried_matches, follow_profile, match_features, named_features,
                                                unfollowable)

        base = self.baseline_ledger
        wanted = named_features(self.declared_profile)
        floor = self.profile.analysis.follow_min_cosine
        tables = base.tables if base is not None and isinstance(base.tables, dict) else {}
        matches: dict = {}
        for role in self.profile.saes:
            now, declared = self.sae_hashes[role], self.declared_on[role]
            features = {role: wanted.get(role, set())}
            if declared == now or not features[role]:
                continue
            base_on = self.baseline_declared_on(role)
            if base_on != declared:
                why = (f"the profile's {role} ids count from SAE {declared}, this run's {role} SAE is {now}"
                       + (f" and the baseline's ids count from {base_on}" if base_on else "")
                       + ": give --baseline a ledger from a run on that SAE, or re-run discover")
                matches.update(unfollowable(features, why))
            elif base.saes[role].hash == now:
                matches.update(carried_matches(tables.get("followed", {}), features, floor))
            else:
                matches.update(match_features(tables.get("anchor_directions", {}), self.directions, features, floor))
        self.profile = follow_profile(self.declared_profile, matches)
        return matches

    def follow_spec(self, spec):
        """The claim on its followed features, and the matches it used."""
        from harness.entry.revalidation import follow_spec

        return follow_spec(spec, self.followed)

    @cached_property
    def device(self) -> str:
        return resolve_device(self.profile.model.device)

    @cached_property
    def prompt_sets(self):
        return load_prompt_sets(self.profile)

    @cached_property
    def model(self):
        return load_model(self.profile.model, device=self.device)

    @cached_property
    def saes(self) -> dict:
        return {role: load_sae(cfg, self.profile.model.d_model, device=self.device, hook=self.profile.model.hook)
                for role, cfg in self.profile.saes.items()}

    @cached_property
    def tables(self):
        return cached_feature_tables(self.profile, self.prompt_sets, model_loader=lambda: self.model,
                                     sae_loader=lambda: self.saes, progress=self.progress, ce_loss=self.ce_loss)

    def _take_decoders(self) -> None:
        """Unit decoder rows, row norms and each SAE's config, then the SAE modules are let go.

        Once the feature tables exist nothing needs an SAE's encoder (2.4 GB for Gemma Scope's 262K),
        so the decoder rows are normalised in place (no second copy of W_dec) and the modules are
        dropped from the run; asking for `run.saes` again reloads them from disk.
        """
        saes = self.saes
        directions, norms, info, cfgs, encoder_norms = {}, {}, {}, {}, {}
        for role, sae in saes.items():
            encoder_norms[role] = sae.W_enc.detach().float().norm(dim=0).cpu().numpy().copy()
            cfg = sae.cfg.to_dict()
            info[role] = {"architecture": sae.cfg.architecture(), "k": cfg.get("k"), "d_sae": cfg.get("d_sae")}
            cfgs[role] = ({k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool))},
                          sae.cfg.architecture())
            with torch.no_grad():
                w_dec = sae.W_dec.detach()
                w_dec = w_dec if w_dec.dtype == torch.float32 and w_dec.device.type == "cpu" else w_dec.float().cpu()
                row_norms = w_dec.norm(dim=1)
                norms[role] = row_norms.numpy().copy()
                w_dec /= row_norms.clamp_min(1e-12)[:, None]  # in place: the SAE is not used after this
            directions[role] = w_dec.numpy()
        self.__dict__.update(directions=directions, decoder_norms=norms, sae_info=info, sae_configs=cfgs,
                             encoder_norms=encoder_norms)
        self.__dict__.pop("saes", None)

    @cached_property
    def directions(self) -> dict[str, np.ndarray]:
        """W_dec rows as float32 unit vectors (decoder cosine is defined on these)."""
        self.tables  # noqa: B018 - a cold run needs the SAEs for the tables first
        self._take_decoders()
        return self.__dict__["directions"]

    @cached_property
    def decoder_norms(self) -> dict[str, np.ndarray]:
        """||W_dec row|| per feature: activation x norm is what a feature writes into the residual stream."""
        self.tables  # noqa: B018
        self._take_decoders()
        return self.__dict__["decoder_norms"]

    @cached_property
    def sae_info(self) -> dict[str, dict]:
        self.tables  # noqa: B018
        self._take_decoders()
        return self.__dict__["sae_info"]

    @cached_property
    def ceilings(self) -> dict[str, np.ndarray]:
        """Per SAE, each feature's largest activation on held-out corpus text (harness.world.ceilings),
        when recorded for exactly these weights; the selectivity bound uses them."""
        from harness.world.ceilings import cache_file, load_ceilings, model_key
        from harness.world.model import weights_hash

        try:
            key = model_key(weights_hash(self.profile.model, download=False), self.profile.model.dtype)
        except Exception:  # noqa: BLE001 - a model this machine cannot identify: no ceilings, said in the notes
            return {}
        recorded = load_ceilings(self.profile, self.sae_hashes, key)
        missing = [role for role in self.profile.saes if role not in recorded]
        if not missing or self.profile.analysis.ceilings != "measure":
            return recorded
        # Measured once per SAE and model into the user cache (never into an SAE's own folder: a packaged
        # SAE's files change only when asked), then loaded like recorded ones.
        from harness.core.errors import MissingResourceError
        from harness.features.tables import measure_sae_ceilings

        tokens = self.profile.analysis.ceiling_tokens
        if self.progress:
            print(f"\nactivation ceilings: none recorded for {', '.join(missing)}; measuring them on {tokens:,} "
                  "held-out corpus tokens (once per SAE and model)", file=sys.stderr, flush=True)
        saes = {role: load_sae(self.profile.saes[role], self.profile.model.d_model, device=self.device,
                               hook=self.profile.model.hook) for role in missing}
        try:
            measured = measure_sae_ceilings(self.profile, self.model, saes, hashes=self.sae_hashes, model_key=key,
                                            tokens=tokens, targets={role: cache_file(self.sae_hashes[role], key)
                                                                    for role in missing})
        except MissingResourceError as error:  # no corpus on this machine: the bound says what it assumes
            self.ceilings_measured = {role: f"not measured: {error}" for role in missing}
            return recorded
        self.ceilings_measured = {role: f"measured this run on {tokens:,} held-out corpus tokens" for role in missing}
        return {**recorded, **{role: v.astype(np.float64) for role, v in measured.items()}}

    def ceiling_note(self, role: str) -> str:
        """Where a role's activation ceilings came from, for the run notes."""
        how = self.ceilings_measured.get(role)
        if role in self.ceilings:
            return how or "recorded (largest activation on held-out corpus text)"
        return "none: unseen firings assumed no larger than those seen" + (f" ({how})" if how else "")

    @cached_property
    def analysis(self) -> Analysis:
        self.followed  # noqa: B018 - the anchors are the followed ones when an SAE changed since the baseline
        return Analysis.build(self.profile, self.tables, self.prompt_sets, self.directions,
                              decoder_norms=self.decoder_norms, sae_info=self.sae_info, ceilings=self.ceilings)

    @cached_property
    def control(self) -> Analysis | None:
        """The same prompts through random SAEs of the trained ones' shape (harness.features.control):
        the gate's negative control and every claim's "holds on random SAE". Cached like the tables."""
        if self.profile.analysis.control == "none":
            return None
        self.followed  # noqa: B018
        import hashlib

        from harness.features.control import control_directions, control_sae
        from harness.features.tables import cached_feature_tables

        tables, seed = self.tables, self.profile.analysis.seed
        directions, norms = self.directions, self.decoder_norms
        encoder_norms = self.__dict__.get("encoder_norms", {})
        centre = tables.resid_sum.sum(0) / tables.n_tokens.sum()
        ks = {role: max(1, int(round(tables.l0(role)))) for role in directions}
        hashes = {role: hashlib.sha256(f"control:{self.sae_hashes[role]}:{seed}:{ks[role]}".encode()).hexdigest()[:16]
                  for role in self.profile.saes}

        control_dirs = {role: control_directions(directions[role], seed=seed) for role in directions}

        def build_saes():
            return {role: control_sae(control_dirs[role], decoder_norms=norms[role],
                                      encoder_norms=encoder_norms.get(role), k=ks[role], centre=centre,
                                      device=self.device) for role in directions}

        control_tables = cached_feature_tables(self.profile, self.prompt_sets, model_loader=lambda: self.model,
                                               sae_loader=build_saes, sae_hashes=hashes, ce_loss=False,
                                               progress=self.progress)
        control = Analysis.build(self.profile, control_tables, self.prompt_sets, control_dirs, decoder_norms=norms,
                                 sae_info={role: {"architecture": "topk", "k": ks[role], "control": True}
                                           for role in directions})
        control.plan_prompts = False  # the control's verdicts are reported; nobody adds prompts for them
        return control

    @cached_property
    def quality(self) -> dict[str, dict]:
        """Per SAE, the held-out quality recorded in its provenance (local SAEs only)."""
        out = {}
        for role, cfg in self.profile.saes.items():
            if cfg.source != "local":
                continue
            provenance = cfg.local_path.parent / "provenance.json"
            if provenance.is_file():
                record = json.loads(provenance.read_text()).get("saes", {}).get(role, {})
                if "quality" in record:
                    out[role] = {**record["quality"], "source": f"{provenance.name} (held-out text)"}
        return out

    @cached_property
    def steering_results(self) -> SteeringResult:
        """The steering study, cached on disk by content (tables, anchors, config, harness version)."""
        from harness.core.version import __version__
        from harness.core.paths import atomic_write_text, cache_dir
        from harness.core.errors import ConfigError
        from harness.steering.study import STUDY_VERSION, steering_key, steering_study

        self.followed  # noqa: B018 - steer the followed anchors
        cfg = self.profile.steering
        if cfg is None:
            raise ConfigError(f"profile {self.profile.name!r} has steering claims but no [steering] table (its "
                              "concept_words, kl_budget, ...): add one, or drop the steering claims")
        key = steering_key({"tables": self.tables.key, "anchors": self.profile.anchors, "cfg": cfg,
                            "seed": self.profile.analysis.seed, "split_seed": self.profile.prompts.split_seed,
                            "harness": __version__, "study": STUDY_VERSION})
        path = cache_dir() / "steering" / f"steering-{key}.json"
        if path.is_file():
            cached = _valid_study(path)
            if cached is not None:
                return cached
            warnings.warn(f"steering cache {path} is unreadable or incomplete: recomputing it", stacklevel=2)
        study = steering_study(self, cfg, progress=self.progress)
        try:
            atomic_write_text(path, study.model_dump_json())
        except OSError as exc:
            warnings.warn(f"could not write the steering cache {path} ({exc.strerror}); keeping it in memory",
                          stacklevel=2)
        return study

    def model_detail(self) -> dict[str, str]:
        from harness.world.model import weights_hash

        cfg = self.profile.model
        try:
            weights = weights_hash(cfg, download=False)  # a run that never needed the model fetches nothing
        except Exception:  # noqa: BLE001 - a planted or unreachable model: the ledger says so
            weights = "unknown"
        return {"weights": weights, "dtype": cfg.dtype, "source": cfg.source,
                "location": cfg.path or cfg.hf_id or cfg.gguf_file or cfg.package or cfg.source}

    def sae_records(self) -> dict[str, SaeRecord]:
        out = {}
        for role, cfg in self.profile.saes.items():
            sae_cfg = {}
            architecture = ""
            if "sae_configs" in self.__dict__:
                sae_cfg, architecture = dict(self.sae_configs[role][0]), self.sae_configs[role][1]
            elif "saes" in self.__dict__:
                sae_cfg = {k: v for k, v in self.saes[role].cfg.to_dict().items() if isinstance(v, (int, float, str, bool))}
                architecture = self.saes[role].cfg.architecture()
            if cfg.source == "pretrained":
                from harness.features.tables import in_registry, registry_entry
                if in_registry(cfg.release):
                    sae_cfg["neuronpedia_id"] = registry_entry(cfg.release, cfg.sae_id)["neuronpedia_id"]
            out[role] = SaeRecord(role=role, source=cfg.source, d_sae=cfg.d_sae, hash=self.sae_hashes[role],
                                  release=cfg.release, sae_id=cfg.sae_id, path=cfg.path, architecture=architecture,
                                  cfg=sae_cfg)
        return out

    def stand_in_parts(self) -> list[str]:
        """The model and SAEs of this run that came from `python -m harness stand-in` (random weights)."""
        from harness.entry.stand_in import stand_in_marker
        from harness.features.tables import sae_location

        model = self.profile.model
        parts = []
        if model.source == "huggingface" and stand_in_marker(model.path or model.hf_id):
            parts.append(f"model {model.path or model.hf_id}")
        for role, cfg in self.profile.saes.items():
            if cfg.source == "pretrained":
                try:
                    repo_id = sae_location(cfg)[0]
                except Exception:  # noqa: BLE001 - a bad release is reported where it loads
                    continue
                if stand_in_marker(repo_id):
                    parts.append(f"{role} SAE {repo_id}")
        return parts

    def record(self, record: ClaimRecord) -> None:
        self.records[record.id] = record

    def report_tables(self) -> dict:
        """Figures' data for the report, computed here (never in the renderer): what every report shows,
        and what each family's own section draws."""
        a = self.analysis
        anchors = self.profile.anchors
        texts = {p.id: p.text for p in self.prompt_sets.all()}
        metas = {p.id: p.metadata for p in self.prompt_sets.all() if p.meta}
        coarse = [int(c) for c in anchors.coarse]
        tables: dict = {
            "anchors": {"coarse": coarse, "fine": [int(f) for f in anchors.fine], "source": anchors.source,
                        "registered_on": anchors.registered_on, "split": anchors.split},
            "ranked_features": {role: a.ranked_features(role) for role in ("coarse", "fine")},
            "distributions": {f"coarse-{c}": a.distributions("coarse", c) for c in coarse},
            "top_prompts": {f"coarse-{c}": a.top_prompts("coarse", c, texts, prompt_meta=metas) for c in coarse},
            "quality": self.quality,
            "activation_ceilings": {role: self.ceiling_note(role) for role in self.profile.saes},
            "l0": {role: a.tables.l0(role, a.evaluation_rows()) for role in ("coarse", "fine")},
        }
        tables["distributions"].update({f"fine-{f}": a.distributions("fine", f) for f in anchors.fine})
        tables["top_prompts"].update({f"fine-{f}": a.top_prompts("fine", f, texts, prompt_meta=metas)
                                      for f in anchors.fine})
        # Each family with claims here adds the data its report section draws (its `tables=`).
        for family in families_in_order():
            specs = self.profile.claims_of(family.name)
            if specs and family.tables is not None:
                tables.update(family.tables(specs, a))
        # The decoder row of every feature the profile names (of the feature tested for it, when followed),
        # keyed by its declared name: a later run against a changed SAE follows them from here.
        from harness.entry.revalidation import named_features

        named = named_features(self.declared_profile)
        tables["anchor_directions"] = {}
        for role, ids in named.items():
            for f in sorted(ids):
                match = self.followed.get(f"{role}-{f}")
                tested = f if match is None else match.new
                if tested is not None and role in self.directions and tested < self.directions[role].shape[0]:
                    tables["anchor_directions"][f"{role}-{f}"] = np.round(self.directions[role][tested], 5).tolist()
                elif self.baseline_ledger is not None:  # no match here: keep the row a later run can follow
                    row = (self.baseline_ledger.tables or {}).get("anchor_directions", {}).get(f"{role}-{f}")
                    if row is not None:
                        tables["anchor_directions"][f"{role}-{f}"] = row
        tables["declared_on"] = dict(self.declared_on)
        if self.followed:
            tables["followed"] = {name: m.as_dict() for name, m in sorted(self.followed.items())}
        return tables

    def steering_for_ledger(self) -> dict:
        """What the report shows of the study (per-prompt arrays stay in the cache)."""
        if "steering_results" not in self.__dict__:
            return {}
        return self.steering_results.ledger_view()

    def ledger(self, exit_status: int | None = None, steering: dict | None = None) -> Ledger:
        from importlib.metadata import PackageNotFoundError, version

        run_id, created = new_run_id()
        versions = {}
        for name in ("torch", "sae-lens", "transformer-lens", "transformers", "numpy", "scipy", "statsmodels",
                     "pytest"):
            try:
                versions[name] = version(name)
            except PackageNotFoundError:
                versions[name] = "not installed"
        from harness.core.version import __version__
        versions["harness"] = __version__
        claims = sorted(self.records.values(), key=claim_order)
        verdict, reason = decide_verdict(claims)
        try:
            tables = self.report_tables()
        except Exception as exc:  # noqa: BLE001 - a failed figure must not lose the verdicts
            tables = {"error": f"{type(exc).__name__}: {exc}"}
        return Ledger(
            run_id=run_id, created_at=created, git_commit=git_commit(), library_versions=versions,
            profile=self.profile.name, profile_description=self.profile.description, model=self.profile.model.name,
            model_detail=self.model_detail(),
            hook=self.profile.model.hook, seed=self.profile.analysis.seed,
            permutations=self.profile.analysis.permutations, split=ledger_split(self.profile.anchors),
            saes=self.sae_records(), prompt_hashes=self.prompt_sets.hashes(),
            prompt_counts={k: len(getattr(self.prompt_sets, k)) for k in ("concept", "neutral", "near_miss")},
            verdict=verdict, verdict_reason=reason, gate=gate_summary(claims, verdict, reason), claims=claims,
            sequential=sequential_record(self.profile.analysis),
            tables=tables, steering=steering or {},
            exit_status=exit_status, stand_in=self.stand_in_parts(),
        )


def sequential_record(analysis) -> dict:
    """The look this run is and the alpha it decided at (empty for a profile with one look)."""
    from harness.statistics.sequential import look_alpha, spent

    if analysis.looks <= 1:
        return {}
    return {"look": analysis.look, "looks": analysis.looks, "spending": analysis.spending, "alpha": analysis.alpha,
            "alpha_this_look": look_alpha(analysis.alpha, analysis.look, analysis.looks, analysis.spending),
            "alpha_spent": spent(analysis.alpha, analysis.look / analysis.looks, analysis.spending)}


def run_folder_name(ledger: Ledger) -> str:
    """`<run id>-<profile>`, the profile part made safe for any file system (no separators, <= 60 chars)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ledger.profile).strip("._") or "profile"
    return f"{ledger.run_id}-{safe[:60]}"


def ledger_split(anchors) -> str:
    """Which prompts the claims were tested on: "all", "confirmation", or the confirmation half with the
    sets supplied for this run used whole."""
    whole = set(anchors.whole_sets)
    if anchors.split == "all" or {"concept", "neutral"} <= whole:
        return "all"
    if whole:
        return f"confirmation ({', '.join(sorted(whole))} used whole)"
    return anchors.split


def write_outputs(ledger: Ledger, out_dir: Path, baseline: Path | None = None) -> Path:
    """claims.json + index.html in out_dir, and a copy under out_dir/runs/<run id>/.

    Both files of a run are rendered into a temp folder first and only then moved into place,
    so a failure never leaves a new ledger beside an old report.
    """
    import os
    import shutil
    import tempfile

    from harness.outputs.ledger import write_ledger
    from harness.core.paths import TEMP_MARK, atomic_dir, clean_stale_temp
    from harness.outputs.report import render_report

    out_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temp(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".run{TEMP_MARK}", dir=out_dir))
    try:
        write_ledger(ledger, staging / "claims.json")
        render_report(staging / "claims.json", staging / "index.html", baseline=baseline)
        with atomic_dir(out_dir / "runs" / run_folder_name(ledger)) as run_dir:
            for name in ("claims.json", "index.html"):
                shutil.copy2(staging / name, run_dir / name)
        for name in ("claims.json", "index.html"):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "index.html"
