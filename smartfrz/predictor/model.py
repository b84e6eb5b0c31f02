"""Attention freeze predictor network: fixed linear snapshot embedding, scale-free tokens, attention."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smartfrz.train_context import CONTEXT_FEATURES

TOKEN_FEATURES = 5
WINDOW_FEATURES = 9
_LOG_FLOOR = 1e-12  # ratios below this are clamped so logs stay finite
_TINY = 1e-30
SAMPLE_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
}  # guards divisions for all-zero windows (the only case scale invariance cannot hold)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and size of the predictor network."""

    window: int = 8
    min_window: int = 3  # a layer is judged once it has this many snapshots; shorter windows are masked
    k: int = 1024
    embed_dim: int = 32
    hidden: int = 16
    heads: int = 4
    head_hidden: int = 64
    dropout: float = 0.1
    projection_seed: int = 0
    sample_dtype: str = "float16"  # precision the training traces stored samples in; inputs are rounded to it
    context: tuple[str, ...] = CONTEXT_FEATURES  # the context inputs, in order (smartfrz.train_context)

    def __post_init__(self) -> None:
        """Reject sizes the network cannot be built with."""
        if self.window < 3 or self.k < 1 or self.embed_dim < 1 or not 3 <= self.min_window <= self.window:
            raise ValueError(f"bad predictor sizes (3 <= min_window <= window, k >= 1, embed_dim >= 1): {self}")
        if self.sample_dtype not in SAMPLE_DTYPES:
            raise ValueError(f"sample_dtype must be one of {sorted(SAMPLE_DTYPES)}, got {self.sample_dtype!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        object.__setattr__(self, "context", tuple(self.context))  # checkpoints store it as a list
        unknown = [c for c in self.context if c not in CONTEXT_FEATURES]
        if unknown or len(set(self.context)) != len(self.context):
            raise ValueError(f"context must be distinct names from {CONTEXT_FEATURES}, got {self.context}")

    def to_dict(self) -> dict[str, object]:
        """Plain dict for checkpoints."""
        return asdict(self)


def random_projection(k: int, dim: int, seed: int) -> Tensor:
    """Seeded Gaussian [K, D] projection scaled to keep distances (Johnson-Lindenstrauss).

    Sample positions are arbitrary and exchangeable, so a learned per-position embedding has nothing
    to learn beyond geometry; a fixed random projection keeps that geometry and makes training cheap.
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(k, dim, generator=gen) / math.sqrt(dim)


def _log_ratio(num: Tensor, den: Tensor) -> Tensor:
    """log(num / den) clamped at _LOG_FLOOR and divided by 10 to keep inputs near unit range."""
    return torch.log((num / (den + _TINY)).clamp_min(_LOG_FLOOR)) / 10.0


def _masked_mean(x: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """Mean of x [N, M] over the positions where the float mask [N, M] is 1, keeping dim 1; ``count`` [N, 1] >= 1."""
    return (x * mask).sum(dim=1, keepdim=True) / count


def _count(mask: Tensor) -> Tensor:
    """Positions set in each row of a mask [N, M], as [N, 1], at least 1 (the divisor of a masked mean)."""
    return mask.sum(dim=1, keepdim=True).clamp_min(1)


def full_mask(emb: Tensor) -> Tensor:
    """All-valid mask [N, W] for windows [N, W, D]."""
    return torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)


def _tokens(dist_tok: Tensor, step_feats: Tensor, step_ok: Tensor) -> Tensor:
    """Tokens [N, W, 5]: dist_tok [N, W-1] at t = 0..W-2 and step_feats [N, W-1, 4] at t = 1..W-1, zero elsewhere.

    Positions whose step is padding are zeroed with where(), not a product: ratios over zero-length
    padded steps may be inf, and inf * 0 is NaN.
    """
    n, m = dist_tok.shape
    tokens = dist_tok.new_zeros(n, m + 1, TOKEN_FEATURES)
    tokens[:, :-1, 0] = torch.where(step_ok, dist_tok, 0.0)
    tokens[:, 1:, 1:] = torch.where(step_ok.unsqueeze(-1), step_feats, 0.0)
    return tokens


def window_features(emb: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Scale-free tokens [N, W, 5] and window features [N, 9] from embedded snapshots [N, W, D].

    ``valid`` [N, W] marks real snapshots; windows shorter than W are left-padded (a valid suffix), and
    padded positions are filled with the first real snapshot so they add no movement. Every feature is
    a ratio of two quantities that scale together, so multiplying a layer's weights by c > 0 leaves it
    unchanged. Token t: distance to the latest snapshot over the window spread, step norm over the mean
    step, log relative step (step / latest weights), cosine with the previous step, cosine with the
    window's net displacement. Window: log spread and log mean step relative to the latest weights, path
    efficiency, mean consecutive-step cosine, trend, spread, last value and late/early ratio of the log
    relative step, and the share of the window that is filled. All dot products come from one Gram
    matrix of d_t = e_t - e_latest (centred first, so float32 keeps small steps accurate).
    """
    n, w, _ = emb.shape
    if valid is None:
        valid = full_mask(emb)
    n_valid = valid.sum(dim=1)  # [N]
    if not bool(valid.all()):  # full windows (the runtime's usual case) need no filling
        first = emb[torch.arange(n, device=emb.device), w - n_valid]  # [N, D] earliest real snapshot
        emb = torch.where(valid.unsqueeze(-1), emb, first.unsqueeze(1))
    ref = emb[:, -1].norm(dim=-1, keepdim=True)  # [N, 1]
    d = emb - emb[:, -1:]
    g = torch.bmm(d, d.transpose(1, 2))  # [N, W, W]
    flat = g.view(n, w * w)  # diagonals as strided slices: g[t, t] at t * (W + 1), g[t, t - k] k earlier
    diag = flat[:, :: w + 1]  # ||d_t||^2
    sub = flat[:, w :: w + 1]  # d_t . d_{t-1}, t = 1..W-1
    dist = diag[:, :-1].clamp_min(0).sqrt()  # [N, W-1], t = 0..W-2
    step = (diag[:, 1:] + diag[:, :-1] - 2 * sub).clamp_min(0).sqrt()  # ||e_t - e_{t-1}||, t = 1..W-1
    step_ok = valid[:, :-1]  # step t is real when snapshot t-1 is (the valid part is a suffix)
    okf = step_ok.to(emb.dtype)
    n_steps = okf.sum(dim=1, keepdim=True)  # >= 1 for windows of >= 2 snapshots
    count = n_steps.clamp_min(1)
    consec_dot = sub[:, 1:] + sub[:, :-1] - flat[:, 2 * w :: w + 1] - diag[:, 1:-1]
    along_dot = g[:, :-1, 0] - g[:, 1:, 0]
    spread = _masked_mean(dist.pow(2), okf, count).sqrt()  # [N, 1] (dist t real exactly when step t+1 is)
    mean_step = _masked_mean(step, okf, count)
    net = dist[:, :1]  # padded positions hold the first real snapshot
    consec_ok = valid[:, :-2]  # consecutive-step cosine t (t = 2..W-1) is real when snapshot t-2 is
    consec = F.pad(torch.where(consec_ok, consec_dot / (step[:, 1:] * step[:, :-1] + _TINY), 0.0), (1, 0))
    log_step = _log_ratio(step, ref)
    step_feats = torch.stack([step / (mean_step + _TINY), log_step, consec, along_dot / (step * net + _TINY)], dim=-1)
    tokens = _tokens(dist / (spread + _TINY), step_feats, step_ok)
    pos = torch.arange(w - 1, dtype=emb.dtype, device=emb.device).expand(n, -1)
    pos_c = (pos - _masked_mean(pos, okf, count)) * okf
    pos_std = _masked_mean(pos_c.pow(2), okf, count).sqrt().clamp_min(_TINY)
    mean_log = _masked_mean(log_step, okf, count)
    log_std = _masked_mean((log_step - mean_log).pow(2), okf, count).sqrt()
    fifth = (n_steps / 5).floor().clamp_min(1)
    rank = okf.cumsum(dim=1)  # 1..n_steps over the real steps
    early = okf * (rank <= fifth)
    late = okf * (rank > n_steps - fifth)
    window_feats = torch.cat(
        [
            _log_ratio(torch.cat([spread, mean_step], dim=1), ref),
            net / ((step * okf).sum(dim=1, keepdim=True) + _TINY),
            consec.sum(dim=1, keepdim=True) / _count(consec_ok),  # consec is zero where not real
            _masked_mean(log_step * pos_c / pos_std, okf, count),  # trend of the relative step size
            log_std,
            log_step[:, -1:],
            _masked_mean(log_step, late, _count(late)) - _masked_mean(log_step, early, _count(early)),
            n_valid.to(emb.dtype).unsqueeze(1) / w,
        ],
        dim=-1,
    )
    return tokens, window_feats


def context_inputs(context: Tensor | None, n: int, like: Tensor, names: tuple[str, ...]) -> Tensor:
    """[N, 2C]: the context values (unknown NaN -> 0) and one 'unknown' flag per feature ``names``."""
    c = len(names)
    if context is None:
        context = torch.full((n, c), float("nan"), dtype=like.dtype, device=like.device)
    if context.shape != (n, c):
        raise ValueError(f"context must be [N={n}, {c}] ({', '.join(names)}), got {list(context.shape)}")
    context = context.to(like.dtype)
    unknown = torch.isnan(context)
    return torch.cat([torch.where(unknown, torch.zeros_like(context), context), unknown.to(like.dtype)], dim=1)


class AttentionPredictorNet(nn.Module):
    """Latest snapshot queries the window (multi-head scaled dot-product); an MLP head gives a logit."""

    def __init__(self, cfg: ModelConfig) -> None:
        """Build layers from a ModelConfig; the projection is a fixed, seeded buffer."""
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.register_buffer("projection", random_projection(cfg.k, cfg.embed_dim, cfg.projection_seed))
        # feature standardisation, fitted on the training windows (set_standardisation) and saved with the weights
        self.register_buffer("token_mean", torch.zeros(TOKEN_FEATURES))
        self.register_buffer("token_std", torch.ones(TOKEN_FEATURES))
        self.register_buffer("window_mean", torch.zeros(WINDOW_FEATURES))
        self.register_buffer("window_std", torch.ones(WINDOW_FEATURES))
        self.token = nn.Sequential(nn.Linear(TOKEN_FEATURES, h), nn.ReLU(inplace=True), nn.Linear(h, h))
        self.time = nn.Parameter(0.02 * torch.randn(cfg.window, h))
        self.norm = nn.LayerNorm(h)
        self.q = nn.Linear(h, h)
        self.k = nn.Linear(h, h, bias=False)
        self.v = nn.Linear(h, h)
        self.out = nn.Linear(h, h)
        n_ctx = 2 * len(cfg.context)
        self.head = nn.Sequential(
            nn.Linear(2 * h + WINDOW_FEATURES + n_ctx, cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, 1),
        )
        self.skip = nn.Linear(WINDOW_FEATURES + n_ctx, 1)  # linear path on summary + context (a logistic floor)

    def embed(self, x: Tensor) -> Tensor:
        """Linear embedding of raw snapshots [..., K] -> [..., D] (done once per recorded snapshot).

        Samples are first rounded to the precision the training traces stored them in (float16 in
        schema 1), so that at runtime tiny steps look exactly as they did in training; the rounding
        is relative, so scale invariance holds up to it (exactly for power-of-two factors).
        """
        return x.to(SAMPLE_DTYPES[self.cfg.sample_dtype]).to(self.projection.dtype) @ self.projection

    def _attend(self, h: Tensor, valid: Tensor) -> Tensor:
        """Latest token queries all tokens; keys/values folded into the query so cost is O(W*H)."""
        n, _, hid = h.shape
        heads, dh = self.cfg.heads, hid // self.cfg.heads
        q = self.q(h[:, -1]).view(n, heads, dh)
        # score_hw = q_h . (Wk_h h_w) = (Wk_h^T q_h) . h_w; head-batched bmm, not einsum (its overhead dominates here)
        qk = torch.bmm(q.transpose(0, 1), self.k.weight.view(heads, dh, hid)).transpose(0, 1)  # [N, heads, H]
        scores = (torch.bmm(qk, h.transpose(1, 2)) / math.sqrt(dh)).masked_fill(~valid[:, None, :], float("-inf"))
        attn = F.dropout(scores.softmax(dim=-1), self.cfg.dropout, self.training)
        pooled = torch.bmm(attn, h)  # [N, heads, H]
        ctx = torch.bmm(pooled.transpose(0, 1), self.v.weight.view(heads, dh, hid).transpose(1, 2))  # [heads, N, dh]
        ctx = ctx.transpose(0, 1).reshape(n, hid) + self.v.bias
        return self.out(ctx)

    @torch.no_grad()
    def set_standardisation(self, emb: Tensor, valid: Tensor | None = None) -> None:
        """Fit the feature means/stds on training windows [N, W, D] (std floored to avoid blow-ups)."""
        valid = full_mask(emb) if valid is None else valid
        tokens, window_feats = window_features(emb, valid)
        flat = tokens[valid]
        self.token_mean.copy_(flat.mean(0))
        self.token_std.copy_(flat.std(0).clamp_min(1e-3))
        self.window_mean.copy_(window_feats.mean(0))
        self.window_std.copy_(window_feats.std(0).clamp_min(1e-3))

    def forward_embedded(self, emb: Tensor, context: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        """Logits [N] from embedded windows [N, W, D], context [N, C] (NaN = unknown) and valid [N, W]."""
        valid = full_mask(emb) if valid is None else valid
        if valid.shape != emb.shape[:2] or not bool(valid[:, -1].all()):
            raise ValueError("valid must be [N, W] with the latest snapshot of every window valid")
        tokens, window_feats = window_features(emb, valid)
        tokens = (tokens - self.token_mean) / self.token_std
        window_feats = (window_feats - self.window_mean) / self.window_std
        summary = torch.cat([window_feats, context_inputs(context, emb.shape[0], emb, self.cfg.context)], dim=1)
        h = self.norm(self.token(tokens).add_(self.time))
        ctx = self._attend(h, valid)
        logit = self.head(torch.cat([ctx, h[:, -1], summary], dim=-1)) + self.skip(summary)
        return logit.squeeze(-1)

    def forward(self, windows: Tensor, context: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        """Logits [N] from raw windows [N, W, K]."""
        return self.forward_embedded(self.embed(windows), context, valid)
