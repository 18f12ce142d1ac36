"""The negative control: a random SAE of the trained one's shape, built without training.

Decoder rows are Gaussian with the trained decoder's own mean and covariance (so they crowd into the
same cone), rescaled to the trained rows' norms. The encoder is tied to them (each column the unit
decoder row, times the trained encoder column's norm): a tied random SAE is the hard control, because
rows that point the same way then fire together by construction, which is exactly what a
cosine-plus-co-firing rule could mistake for a hierarchy. It is a TopK SAE whose k is the trained SAE's
L0 on this run's prompts, so it is as sparse as the real one whatever the real one's architecture.
"""

from __future__ import annotations

import numpy as np

CONTROL_STREAM = 0x636F6E74  # "cont": the control's own random stream, never another draw's


def decoder_moments(unit_rows_FD: np.ndarray, *, chunk: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], a square root [D, D] of the covariance) of a dictionary's rows, accumulated in chunks."""
    rows = np.asarray(unit_rows_FD)
    n_rows, d = rows.shape
    mean = np.zeros(d)
    second = np.zeros((d, d))
    for start in range(0, n_rows, chunk):
        block = rows[start:start + chunk].astype(np.float64)
        mean += block.sum(0)
        second += block.T @ block
    mean /= n_rows
    cov = second / n_rows - np.outer(mean, mean)
    # A rank-deficient covariance (fewer rows than dimensions) still has a square root.
    values, vectors = np.linalg.eigh(cov)
    return mean, vectors * np.sqrt(np.clip(values, 0.0, None))


def draw_rows(mean: np.ndarray, root: np.ndarray, n_rows: int, *, seed: int, chunk: int = 16_384) -> np.ndarray:
    """[n_rows, D] unit rows drawn from N(mean, root root^T) on the control's own stream (float32)."""
    rng = np.random.default_rng([seed, CONTROL_STREAM])
    out = np.empty((n_rows, mean.size), np.float32)
    for start in range(0, n_rows, chunk):
        size = min(chunk, n_rows - start)
        draw = mean + rng.standard_normal((size, mean.size)) @ root.T
        out[start:start + size] = draw / np.maximum(np.linalg.norm(draw, axis=1, keepdims=True), 1e-12)
    return out


def control_directions(unit_rows_FD: np.ndarray, *, seed: int) -> np.ndarray:
    """[F, D] unit rows drawn from N(mean, covariance) of the given unit rows (float32)."""
    mean, root = decoder_moments(unit_rows_FD)
    return draw_rows(mean, root, np.asarray(unit_rows_FD).shape[0], seed=seed)


def tied_topk_encode(x_TD: np.ndarray, unit_rows_FD: np.ndarray, *, k: int, centre: np.ndarray,
                     encoder_norms: np.ndarray | None = None) -> np.ndarray:
    """What the control SAE computes, in numpy (for synthetic worlds): ReLU of the k largest
    pre-activations (x - centre) @ (rows * encoder norms)^T, zero elsewhere."""
    weights = unit_rows_FD if encoder_norms is None else unit_rows_FD * encoder_norms[:, None]
    pre = (np.asarray(x_TD, dtype=np.float64) - centre) @ weights.T
    k = min(int(k), pre.shape[1])
    keep = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    out = np.zeros_like(pre)
    np.put_along_axis(out, keep, np.maximum(np.take_along_axis(pre, keep, axis=1), 0.0), axis=1)
    return out


def control_sae(control_rows_FD: np.ndarray, *, decoder_norms: np.ndarray, encoder_norms: np.ndarray | None, k: int,
                centre: np.ndarray, device: str = "cpu"):
    """A SAELens TopK SAE over unit rows from `control_directions`, with the trained SAE's norms and L0."""
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig

    rows = np.asarray(control_rows_FD, np.float32)
    n_rows, d = rows.shape
    k = int(max(1, min(k, n_rows)))
    sae = TopKSAE(TopKSAEConfig(d_in=d, d_sae=n_rows, k=k, device=device, dtype="float32",
                                apply_b_dec_to_input=True))
    enc = np.ones(n_rows, np.float32) if encoder_norms is None else np.asarray(encoder_norms, np.float32)
    with torch.no_grad():
        unit = torch.from_numpy(rows)
        sae.W_dec.copy_(unit * torch.from_numpy(np.asarray(decoder_norms, np.float32))[:, None])
        sae.W_enc.copy_((unit * torch.from_numpy(enc)[:, None]).T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(torch.from_numpy(np.asarray(centre, np.float32)))
    sae.eval()
    return sae
