"""The fast path under the steering study: prefix reuse, batched directions, KV-cached sampling.

Steering adds a vector to the residual stream after decoder layer L (the profile's hook,
`blocks.L.hook_resid_post`). Everything before layer L is the same for every direction and
coefficient, so it runs once per prompt batch:

- `prepare` runs the unsteered model once over each prompt plus a "trie" of word prefixes (the
  extra positions needed to score multi-token words, attached to the prompt with a tree-shaped
  attention mask so that one forward scores every word), and keeps (a) the residual after layer L
  at the positions that will be steered, (b) the key/value cache of the positions that are never
  steered (with `positions="reply"`, the whole prompt but its last token), and (c) the unsteered
  log-probabilities.
- `score` then runs only layers L+1.. over the steered positions, for many vectors at once
  (vectors x prompts in one batch), against that cache: layers 0..L are replaced for the call by
  a replay of the stored residual plus the vector.
- `sample` generates with a KV cache (the unsteered prompt prefix computed once and shared by all
  directions); `use_cache=False` recomputes the whole sequence per token, for the equality test.

It works on the Hugging Face causal LM under a TransformerLens `TransformerBridge` (or a bare one),
through the model's own forward, so masks, rotary positions and norms are the model's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from harness.core.config import STEERING_POSITIONS as POSITIONS


def causal_lm(model):
    """The Hugging Face causal LM under a TransformerBridge, or the model itself."""
    return getattr(model, "original_model", model)


def hook_layer(hook: str) -> int:
    """`blocks.14.hook_resid_post` -> 14 (steering reads and writes the output of that block)."""
    parts = hook.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or parts[2] != "hook_resid_post" or not parts[1].isdigit():
        from harness.core.errors import ConfigError
        raise ConfigError(f"steering needs a hook of the form 'blocks.L.hook_resid_post'; got {hook!r}")
    return int(parts[1])


def _device(lm) -> torch.device:
    return next(lm.parameters()).device


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def replay_until(layers, layer: int, hidden: torch.Tensor) -> Iterator[None]:
    """For one call, layers 0..layer-1 pass their input through and `layer` returns `hidden`:
    the model computes only what comes after the hook. Restored on exit, always."""
    def passthrough(hidden_states, *args, **kwargs):
        return hidden_states

    def replay(hidden_states, *args, **kwargs):
        return hidden

    try:
        for i in range(layer):
            layers[i].forward = passthrough
        layers[layer].forward = replay
        yield
    finally:
        for i in range(layer + 1):
            layers[i].__dict__.pop("forward", None)


@contextmanager
def plain_modules(lm) -> Iterator[None]:
    """The Hugging Face modules as they were before TransformerLens wrapped them, for one call.

    The bridge re-implements attention for its hooks and (with transformers 5.x, which passes the
    KV cache as `cache=`) drops the cache; the steering engine needs neither its hooks nor that
    path, so it runs the original modules, unwrapped, and puts the wrappers back afterwards."""
    swapped = []

    def unwrap(module):
        for name, child in list(module._modules.items()):
            original = getattr(child, "original_component", None) if child is not None else None
            if isinstance(original, torch.nn.Module):
                swapped.append((module, name, child))
                module._modules[name] = original
                child = original
            if child is not None:
                unwrap(child)

    try:
        unwrap(lm)
        yield
    finally:
        for module, name, child in reversed(swapped):
            module._modules[name] = child


def word_trie(units: Sequence[Sequence[int]], *, whole_words: bool = False) -> list[tuple[int, ...]]:
    """Prefixes of the units, each a position to compute (sorted by depth): the proper ones, and with
    `whole_words` the units themselves too (where the next token must end the word)."""
    extra = 1 if whole_words else 0
    nodes = {tuple(u[:k]) for u in units for k in range(1, len(u) + extra)}
    return sorted(nodes, key=lambda n: (len(n), n))


def unit_logprobs(logprobs_BNV: torch.Tensor, nodes, units, word_end: torch.Tensor | None = None) -> torch.Tensor:
    """[B, units] log-probabilities of each unit from log-probs gathered at [last prompt token, node...].

    With `word_end` ([V] bool), each unit is a whole word: its tokens' log-probs plus the log of the
    probability mass the model puts, right after it, on tokens that end a word."""
    col = {node: 1 + j for j, node in enumerate(nodes)}
    out = torch.zeros(logprobs_BNV.shape[0], len(units))
    for u, unit in enumerate(units):
        total = logprobs_BNV[:, 0, unit[0]].clone()
        for k in range(1, len(unit)):
            total += logprobs_BNV[:, col[unit[:k]], unit[k]]
        if word_end is not None:
            ends = word_end.to(logprobs_BNV.device)
            total += torch.logsumexp(logprobs_BNV[:, col[tuple(unit)]][:, ends], dim=-1)
        out[:, u] = total.cpu()
    return out


@dataclass
class PreparedBatch:
    """One batch of prompts ready for steered scoring (see module docstring)."""
    index: np.ndarray  # prompt indices in this batch
    resid_BQD: torch.Tensor  # residual after layer L at the query block, unsteered
    steer_BQ: torch.Tensor  # 1.0 where the vector is added
    mask_B1QK: torch.Tensor  # additive attention mask of the query block over past + query
    position_BQ: torch.Tensor
    past: list  # per layer after L: (keys, values) of the never-steered prefix, or None
    past_length: int
    last_col_B: torch.Tensor  # query column of each prompt's last token
    node_cols: list[int]  # query column of each trie node (same for every row)
    base_last_BV: torch.Tensor  # unsteered log-probs at the last prompt token
    base_units_BU: torch.Tensor  # unsteered log-prob of every unit


@dataclass
class Prepared:
    batches: list[PreparedBatch]
    units: list[tuple[int, ...]]
    n_prompts: int


class SteeringEngine:
    def __init__(self, model, layer: int, *, positions: str = "reply", batch_prompts: int = 16,
                 batch_rows: int = 64, sample_batch: int = 64, word_end: np.ndarray | None = None):
        """`word_end`: a [vocab] mask of the tokens that end a word (whitespace, punctuation, end of text).
        With it a unit scores as a whole word, P(its tokens) x P(the next token ends it), so " Est" never
        counts " Estonia"; without it, as its tokens alone (a prefix)."""
        if positions not in POSITIONS:
            from harness.core.errors import choices_error
            raise choices_error("steering.positions", positions, POSITIONS)
        self.lm = causal_lm(model)
        self.word_end = None if word_end is None else torch.as_tensor(np.asarray(word_end, dtype=bool))
        self.layer = layer
        self.positions = positions
        self.batch_prompts = batch_prompts
        self.batch_rows = batch_rows  # rows (vectors x prompts) per tail forward
        self.sample_batch = sample_batch  # prompts sampled together (one position per step: batch wide)
        self._prefixes: dict = {}
        self.device = _device(self.lm)
        self.dtype = next(self.lm.parameters()).dtype
        self.n_layers = len(self.lm.model.layers)
        self.softcap = getattr(self.lm.config, "final_logit_softcapping", None)
        # transformers 5.x renamed the model's `past_key_values` argument to `cache`.
        import inspect
        params = inspect.signature(self.lm.model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    @property
    def body(self):
        return self.lm.model

    @property
    def layers(self):
        return self.lm.model.layers

    # ---- shared pieces ----------------------------------------------------------------------
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm.lm_head(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _allowed(self, length: int, nodes: list[tuple[int, ...]], width: int) -> torch.Tensor:
        """Which position attends to which, for one prompt of `length` tokens padded to `width`,
        followed by the trie nodes: causal over the prompt, each node sees the prompt and its ancestors."""
        n = width + len(nodes)
        allowed = torch.zeros(n, n, dtype=torch.bool)
        allowed[:length, :length] = torch.tril(torch.ones(length, length, dtype=torch.bool))
        for i in range(length, width):
            allowed[i, i] = True  # padding sees itself only (no NaN rows); nothing sees padding
        col = {node: width + j for j, node in enumerate(nodes)}
        for j, node in enumerate(nodes):
            row = width + j
            allowed[row, :length] = True
            for k in range(1, len(node) + 1):
                allowed[row, col[node[:k]]] = True
        return allowed

    # ---- preparation ------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, prompts: Sequence[Sequence[int]], units: Sequence[Sequence[int]] = ()) -> Prepared:
        with plain_modules(self.lm):
            return self._prepare(prompts, units)

    def _prepare(self, prompts, units) -> Prepared:
        units = [tuple(int(t) for t in u) for u in units]
        nodes = word_trie(units, whole_words=self.word_end is not None)
        order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths batch together
        batches = []
        for start in range(0, len(order), self.batch_prompts):
            index = order[start:start + self.batch_prompts]
            batches.append(self._prepare_batch([list(prompts[i]) for i in index], index, nodes, units))
        return Prepared(batches=batches, units=units, n_prompts=len(prompts))

    def _prepare_batch(self, rows: list[list[int]], index: np.ndarray, nodes, units) -> PreparedBatch:
        lengths = [len(r) for r in rows]
        width = max(lengths)
        n = width + len(nodes)
        B = len(rows)
        tokens = torch.zeros(B, n, dtype=torch.long)
        position = torch.zeros(B, n, dtype=torch.long)
        allowed = torch.zeros(B, n, n, dtype=torch.bool)
        for b, row in enumerate(rows):
            tokens[b, :len(row)] = torch.tensor(row)
            position[b, :width] = torch.arange(width)
            for j, node in enumerate(nodes):
                tokens[b, width + j] = node[-1]
                position[b, width + j] = len(row) - 1 + len(node)
            allowed[b] = self._allowed(len(row), nodes, width)
        mask = self._additive(allowed)
        # The never-steered prefix: with "reply", everything before the last prompt token of the
        # shortest prompt (longer prompts keep their extra, unsteered, tokens in the query block).
        past = min(lengths) - 1 if self.positions == "reply" else 0
        captured = {}

        def keep(module, args, output):
            captured["resid"] = _first(output).detach()

        handle = self.layers[self.layer].register_forward_hook(keep)
        try:
            out = self.body(input_ids=tokens.to(self.device), attention_mask=mask.to(self.device),
                            position_ids=position.to(self.device), use_cache=past > 0)
        finally:
            handle.remove()
        hidden = out.last_hidden_state
        kv = []
        if past > 0:
            cache = out.past_key_values if getattr(out, "past_key_values", None) is not None else out.cache
            for i in range(self.n_layers):
                if i <= self.layer:
                    kv.append(None)
                else:
                    layer_cache = cache.layers[i]
                    kv.append((layer_cache.keys[:, :, :past].clone(), layer_cache.values[:, :, :past].clone()))
        steer = torch.zeros(B, n)
        for b, length in enumerate(lengths):
            first = length - 1 if self.positions == "reply" else 0
            steer[b, first:length] = 1.0
            steer[b, width:] = 1.0  # the word positions come after the prompt: always steered
        last = torch.tensor(lengths) - 1
        node_cols = [width + j for j in range(len(nodes))]
        needed = self._gather(hidden, last, node_cols)
        logprobs = torch.log_softmax(self._logits(needed), dim=-1)
        base_last = logprobs[:, 0]
        base_units = self._unit_logprobs(logprobs, nodes, units)
        return PreparedBatch(
            index=np.asarray(index), resid_BQD=captured["resid"][:, past:].float().cpu(), steer_BQ=steer[:, past:],
            mask_B1QK=mask[:, :, past:, :], position_BQ=position[:, past:], past=kv, past_length=past,
            last_col_B=last - past, node_cols=[c - past for c in node_cols], base_last_BV=base_last.cpu(),
            base_units_BU=base_units.cpu())

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return mask[:, None]

    @staticmethod
    def _gather(hidden_BQD: torch.Tensor, last_B: torch.Tensor, node_cols: list[int]) -> torch.Tensor:
        """Hidden states at [last prompt token, node 0, node 1, ...] per row: [B, 1 + nodes, D]."""
        B = hidden_BQD.shape[0]
        rows = torch.arange(B, device=hidden_BQD.device)
        last = hidden_BQD[rows, last_B.to(hidden_BQD.device)][:, None]
        if not node_cols:
            return last
        return torch.cat([last, hidden_BQD[:, node_cols]], dim=1)

    def _unit_logprobs(self, logprobs_BNV: torch.Tensor, nodes, units) -> torch.Tensor:
        """log P(unit) = log P(t0 | prompt) + sum_k log P(t_k | prompt, t_<k), from the gathered rows;
        as a whole word, plus log P(the next token ends the word | prompt, unit)."""
        return unit_logprobs(logprobs_BNV, nodes, units, self.word_end)

    # ---- steered scoring ----------------------------------------------------------------------
    @torch.no_grad()
    def score(self, prepared: Prepared, vectors_KD: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """For each vector and prompt: KL(steered || unsteered) of the next-token distribution at the
        last prompt token, and the log-probability of every unit. Arrays [K, prompts(, units)]."""
        with plain_modules(self.lm):
            return self._score(prepared, vectors_KD)

    def _score(self, prepared: Prepared, vectors_KD) -> dict[str, np.ndarray]:
        vectors = torch.as_tensor(np.asarray(vectors_KD), dtype=torch.float32)
        K = vectors.shape[0]
        kl = np.zeros((K, prepared.n_prompts))
        unit_lp = np.zeros((K, prepared.n_prompts, len(prepared.units)))
        nodes = word_trie(prepared.units, whole_words=self.word_end is not None)
        for batch in prepared.batches:
            B = len(batch.index)
            per_call = max(1, self.batch_rows // B)
            for k0 in range(0, K, per_call):
                chunk = vectors[k0:k0 + per_call]
                logprobs = self._tail(batch, chunk)  # [k*B, 1 + nodes, V]
                kb = chunk.shape[0]
                lp_last = logprobs[:, 0]
                base = batch.base_last_BV.repeat(kb, 1).to(lp_last.device)
                kl_rows = (lp_last.exp() * (lp_last - base)).sum(-1).cpu().numpy().reshape(kb, B)
                kl[k0:k0 + kb][:, batch.index] = kl_rows
                if prepared.units:
                    u = self._unit_logprobs(logprobs, nodes, prepared.units).numpy().reshape(kb, B, -1)
                    unit_lp[k0:k0 + kb][:, batch.index] = u
        return {"kl": kl, "unit_logprob": unit_lp}

    def _tail(self, batch: PreparedBatch, vectors_KD: torch.Tensor) -> torch.Tensor:
        kb = vectors_KD.shape[0]
        B, Q, D = batch.resid_BQD.shape
        hidden = (batch.resid_BQD[None] + vectors_KD[:, None, None, :] * batch.steer_BQ[None, :, :, None])
        hidden = hidden.reshape(kb * B, Q, D).to(self.device, self.dtype)
        mask = batch.mask_B1QK.repeat(kb, 1, 1, 1).to(self.device)
        position = batch.position_BQ.repeat(kb, 1).to(self.device)
        cache = None
        if batch.past_length:
            from transformers import DynamicCache
            cache = DynamicCache(ddp_cache_data=[
                (None, None) if kv is None else (kv[0].repeat(kb, 1, 1, 1), kv[1].repeat(kb, 1, 1, 1))
                for kv in batch.past])
        with replay_until(self.layers, self.layer, hidden):
            out = self.body(inputs_embeds=torch.zeros_like(hidden), attention_mask=mask, position_ids=position,
                            **{self.cache_arg: cache}, use_cache=cache is not None,
                            cache_position=torch.arange(batch.past_length, batch.past_length + Q, device=self.device))
        needed = self._gather(out.last_hidden_state, batch.last_col_B.repeat(kb), batch.node_cols)
        return torch.log_softmax(self._logits(needed), dim=-1)

    # ---- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, prompts: Sequence[Sequence[int]], vector_D: torch.Tensor | np.ndarray | None, *, seed: int,
               max_new_tokens: int, temperature: float = 1.0, use_cache: bool = True,
               stop_ids: Sequence[int] = ()) -> list[list[int]]:
        """Seeded sampling of `max_new_tokens` per prompt (left-padded batches). The vector is added
        after layer L at the steered positions (`positions`: the reply, or prompt and reply). One
        uniform draw per row and step (inverse CDF), so cached and recomputed runs draw alike."""
        with plain_modules(self.lm):
            return self._sample(prompts, vector_D, seed, max_new_tokens, temperature, use_cache, stop_ids)

    def _sample(self, prompts, vector_D, seed, max_new_tokens, temperature, use_cache, stop_ids):
        vector = None if vector_D is None else torch.as_tensor(np.asarray(vector_D), dtype=torch.float32)
        generator = torch.Generator().manual_seed(seed)
        out: list[list[int]] = [[] for _ in prompts]
        order = np.argsort([len(p) for p in prompts], kind="stable")
        for start in range(0, len(order), self.sample_batch):
            index = order[start:start + self.sample_batch]
            draws = torch.rand(len(index), max_new_tokens, generator=generator)
            tokens = self._sample_batch([list(prompts[i]) for i in index], vector, draws, max_new_tokens,
                                        temperature, use_cache, set(int(s) for s in stop_ids))
            for row, i in enumerate(index):
                out[i] = tokens[row]
        return out

    def _sample_batch(self, rows, vector, draws, steps, temperature, use_cache, stop_ids) -> list[list[int]]:
        B = len(rows)
        width = max(len(r) for r in rows)
        pad = 0
        tokens = torch.full((B, width), pad, dtype=torch.long)
        attention = torch.zeros(B, width, dtype=torch.long)
        for b, row in enumerate(rows):
            tokens[b, width - len(row):] = torch.tensor(row)
            attention[b, width - len(row):] = 1
        generated = torch.zeros(B, 0, dtype=torch.long)
        vectors = None if vector is None else vector[None].repeat(B, 1).to(self.device)
        cache = None
        for step in range(steps):
            if use_cache and step > 0:
                feed, feed_attention = generated[:, -1:], torch.cat([attention, torch.ones(B, step, dtype=torch.long)], 1)
                logits = self._forward_steered(feed, feed_attention, vectors, cache=cache, steer_all=True)
            elif use_cache:
                # The prompt: with "reply", all but the last token unsteered (computed once), then the last.
                if self.positions == "reply":
                    # The unsteered prompt prefix is the same for every direction: computed once, reused.
                    cache = self._prefix_cache(tokens, attention)
                    logits = self._forward_steered(tokens[:, -1:], attention, vectors, cache=cache, steer_all=True)
                else:
                    from transformers import DynamicCache
                    cache = DynamicCache()
                    logits = self._forward_steered(tokens, attention, vectors, cache=cache, steer_all=True)
            else:
                full = torch.cat([tokens, generated], 1)
                full_attention = torch.cat([attention, torch.ones(B, step, dtype=torch.long)], 1)
                steer_from = width - 1 if self.positions == "reply" else 0
                logits = self._forward_steered(full, full_attention, vectors, cache=None, steer_from=steer_from)
            probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
            cdf = probs.cumsum(-1)
            nxt = torch.searchsorted(cdf, (draws[:, step] * cdf[:, -1])[:, None]).clamp(max=probs.shape[-1] - 1)
            generated = torch.cat([generated, nxt], 1)
        result = []
        for b in range(B):
            row = generated[b].tolist()
            cut = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
            result.append(row[:cut])
        return result

    def _prefix_cache(self, tokens, attention):
        from transformers import DynamicCache

        key = (tuple(map(tuple, tokens.tolist())), tuple(map(tuple, attention.tolist())))
        stored = self._prefixes.get(key)
        if stored is None:
            cache = DynamicCache()
            self._forward_steered(tokens[:, :-1], attention[:, :-1], None, cache=cache, steer_all=True)
            stored = [(layer.keys, layer.values) for layer in cache.layers]
            if len(self._prefixes) >= 8:  # a few batches kept: conditions loop over the same ones
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[key] = stored
        # update() concatenates into new tensors, so the stored ones are never written.
        return DynamicCache(ddp_cache_data=stored)

    def _forward_steered(self, tokens, attention, vectors, *, cache, steer_all: bool = False, steer_from: int = 0):
        """Logits at the last position; the vector is added after layer L at every position fed
        (steer_all) or at positions >= steer_from."""
        position = (attention.cumsum(-1) - 1).clamp(min=0)[:, -tokens.shape[1]:]
        hooks = []
        if vectors is not None:
            def add(module, args, output):
                hidden = _first(output)
                if steer_all:
                    steered = hidden + vectors[:, None, :].to(hidden.dtype)
                else:
                    gate = (torch.arange(hidden.shape[1], device=hidden.device) >= steer_from).to(hidden.dtype)
                    steered = hidden + vectors[:, None, :].to(hidden.dtype) * gate[None, :, None]
                return (steered, *output[1:]) if isinstance(output, tuple) else steered
            hooks.append(self.layers[self.layer].register_forward_hook(add))
        try:
            out = self.body(input_ids=tokens.to(self.device), attention_mask=attention.to(self.device),
                            position_ids=position.to(self.device), **{self.cache_arg: cache},
                            use_cache=cache is not None)
        finally:
            for h in hooks:
                h.remove()
        return self._logits(out.last_hidden_state[:, -1])
