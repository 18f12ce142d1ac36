"""Residual-stream capture at the hook, stopped at the hook's layer, with honest masks.

Batches are right-padded: with causal attention a real token never sees a pad to its
right, so no attention mask is needed and real positions are exact. The mask keeps only
real tokens, and drops the first position and every special token (their residual norms
are 100x the median, so they would dominate any max-pool or training batch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class TokenBatch:
    tokens_BS: torch.Tensor  # right-padded token ids
    keep_BS: torch.Tensor  # True where the position is a real, non-special, non-first token
    lengths_B: torch.Tensor


def special_token_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            ids.add(int(value))
    return ids


def tokenize_batch(tokenizer, texts: Sequence[str], max_tokens: int) -> TokenBatch:
    """BOS + text tokens, truncated to max_tokens, right-padded."""
    bos = tokenizer.bos_token_id
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append(([bos] if bos is not None else []) + list(ids)[: max_tokens - 1])
    return pack_rows(rows, tokenizer)


def pack_rows(rows: Sequence[Sequence[int]], tokenizer) -> TokenBatch:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), int(pad), dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    positions = torch.arange(width)[None, :]
    keep = (positions < lengths[:, None]) & (positions > 0)
    special = torch.tensor(sorted(special_token_ids(tokenizer)), dtype=torch.long)
    if special.numel():
        keep &= ~torch.isin(tokens, special)
    return TokenBatch(tokens_BS=tokens, keep_BS=keep, lengths_B=lengths)


@torch.no_grad()
def resid_at_hook(model, tokens_BS: torch.Tensor, hook: str, layer: int) -> torch.Tensor:
    """Residual stream at `hook` for a batch, running only the layers up to the hook."""
    device = next(model.parameters()).device
    _, cache = model.run_with_cache(
        tokens_BS.to(device), names_filter=[hook], stop_at_layer=layer + 1, return_cache_object=False
    )
    return cache[hook].float()


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def ce_loss_score_batches(sae, model, hook: str, token_batches: Sequence[TokenBatch],
                          reference: dict | None = None) -> dict:
    """SAEBench's CE-loss score, (CE_zero - CE_sae) / (CE_zero - CE_clean).

    `reference`: the per_prompt of an earlier call on the same batches; its clean and zero-ablated
    losses do not depend on the SAE, so only the spliced forward runs again (4 full forwards for two
    SAEs instead of 6: at Gemma 2 2B on a CPU that is most of this stage).

    Only the kept positions are spliced (reconstruction or zeros); the first position and
    special tokens keep their clean residual in every condition, as they are never encoded.
    Next-token loss is averaged over every real target token.
    """
    per_prompt: dict[str, list[float]] = {"clean": [], "sae": [], "zero": [], "tokens": []}
    modes = ("sae",) if reference else ("clean", "sae", "zero")
    device = next(model.parameters()).device
    for batch in token_batches:
        tokens = batch.tokens_BS.to(device)
        keep = batch.keep_BS.to(device)
        target = (torch.arange(tokens.shape[1], device=device)[None, :]
                  < batch.lengths_B.to(device)[:, None] - 1)[:, :-1]

        def splice(mode: str):
            def hook_fn(acts, hook=None):
                acts = acts.clone()
                if mode == "sae":
                    acts[keep] = sae.decode(sae.encode(acts[keep].to(sae.W_dec.dtype))).to(acts.dtype)
                else:
                    acts[keep] = 0
                return acts
            return hook_fn

        for mode in modes:
            hooks = [] if mode == "clean" else [(hook, splice(mode))]
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            nll = -logprobs.gather(-1, tokens[:, 1:, None])[..., 0]
            per_prompt[mode] += (nll * target).double().sum(1).tolist()
        per_prompt["tokens"] += target.sum(1).tolist()
    if reference:
        per_prompt.update(clean=list(reference["clean"]), zero=list(reference["zero"]))
    count = sum(per_prompt["tokens"])
    ce = {k: sum(per_prompt[k]) / count for k in ("clean", "sae", "zero")}
    score = (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"])
    return {"ce_loss_score": round(score, 4), "ce_loss_clean": round(ce["clean"], 4),
            "ce_loss_with_sae": round(ce["sae"], 4), "ce_loss_with_zero": round(ce["zero"], 4),
            "per_prompt": per_prompt}
