"""Attention freeze predictor network: fixed linear snapshot embedding, scale-free tokens, attention."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TOKEN_FEATURES = 5
WINDOW_FEATURES = 8
_LOG_FLOOR = 1e-12  # ratios below this are clamped so logs stay finite
_TINY = 1e-30
SAMPLE_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
}  # guards divisions for all-zero windows (the only case scale invariance cannot hold)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and size of the predictor network."""

    window: int = 30
    k: int = 1024
    embed_dim: int = 32
    hidden: int = 16
    heads: int = 4
    head_hidden: int = 64
    dropout: float = 0.1
    projection_seed: int = 0
    sample_dtype: str = "float16"  # precision the training traces stored samples in; inputs are rounded to it

    def __post_init__(self) -> None:
        """Reject sizes the network cannot be built with."""
        if self.window < 3 or self.k < 1 or self.embed_dim < 1:
            raise ValueError(f"bad predictor sizes (window >= 3, k >= 1, embed_dim >= 1): {self}")
        if self.sample_dtype not in SAMPLE_DTYPES:
            raise ValueError(f"sample_dtype must be one of {sorted(SAMPLE_DTYPES)}, got {self.sample_dtype!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")

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


def window_features(emb: Tensor) -> tuple[Tensor, Tensor]:
    """Scale-free tokens [N, W, 5] and window features [N, 8] from embedded snapshots [N, W, D].

    Every feature is a ratio of two quantities that scale together, so multiplying a layer's
    weights by c > 0 leaves it unchanged. Token t: distance to the latest snapshot over the window
    spread, step norm (e_t - e_{t-1}) over the mean step, log relative step (step / latest weights),
    cosine with the previous step, cosine with the window's net displacement (token 0 has no step,
    the latest no distance: zeros). Window: log spread and log mean step relative to the latest
    weights, path efficiency (net displacement / path length), mean consecutive-step cosine, and the
    trend, spread, last value and late/early ratio of the log relative step. All dot
    products come from one Gram matrix of d_t = e_t - e_latest (centred first, so float32 keeps
    small steps accurate), which keeps the op count, and so the per-stage latency, low.
    """
    ref = emb[:, -1].norm(dim=-1, keepdim=True)  # [N, 1]
    d = emb - emb[:, -1:]
    g = d @ d.transpose(1, 2)  # [N, W, W]
    diag = g.diagonal(dim1=1, dim2=2)  # ||d_t||^2
    sub = g.diagonal(offset=-1, dim1=1, dim2=2)  # d_t . d_{t-1}, t = 1..W-1
    dist = diag[:, :-1].clamp_min(0).sqrt()  # [N, W-1], t = 0..W-2
    step = (diag[:, 1:] + diag[:, :-1] - 2 * sub).clamp_min(0).sqrt()  # ||e_t - e_{t-1}||, t = 1..W-1
    # (d_t - d_{t-1}) . (d_{t-1} - d_{t-2}) and (d_t - d_{t-1}) . (e_latest - e_0) from Gram entries
    consec_dot = sub[:, 1:] + sub[:, :-1] - g.diagonal(offset=-2, dim1=1, dim2=2) - diag[:, 1:-1]
    along_dot = g[:, :-1, 0] - g[:, 1:, 0]
    spread = dist.pow(2).mean(dim=1, keepdim=True).sqrt()  # [N, 1]
    mean_step = step.mean(dim=1, keepdim=True)
    net = dist[:, :1]
    consec = F.pad(consec_dot / (step[:, 1:] * step[:, :-1] + _TINY), (1, 0))  # [N, W-1]
    step_feats = torch.stack(
        [step / (mean_step + _TINY), _log_ratio(step, ref), consec, along_dot / (step * net + _TINY)], dim=-1
    )
    tokens = torch.cat([F.pad(dist / (spread + _TINY), (0, 1)).unsqueeze(-1), F.pad(step_feats, (0, 0, 1, 0))], -1)
    log_step = step_feats[..., 1]  # [N, W-1] log(step / ||e_latest||) / 10
    pos = torch.arange(log_step.shape[1], dtype=emb.dtype, device=emb.device)
    pos = (pos - pos.mean()) / pos.std()
    fifth = max(1, log_step.shape[1] // 5)
    window_feats = torch.cat(
        [
            _log_ratio(spread, ref),
            _log_ratio(mean_step, ref),
            net / (step.sum(dim=1, keepdim=True) + _TINY),
            consec.sum(dim=1, keepdim=True) / (consec.shape[1] - 1),
            (log_step * pos).mean(dim=1, keepdim=True),  # trend of the relative step size
            log_step.std(dim=1, keepdim=True),
            log_step[:, -1:],
            log_step[:, -fifth:].mean(dim=1, keepdim=True) - log_step[:, :fifth].mean(dim=1, keepdim=True),
        ],
        dim=-1,
    )
    return tokens, window_feats


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
        self.head = nn.Sequential(
            nn.Linear(2 * h + WINDOW_FEATURES, cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, 1),
        )
        self.skip = nn.Linear(WINDOW_FEATURES, 1)  # linear path on the window summary (logistic-regression floor)

    def embed(self, x: Tensor) -> Tensor:
        """Linear embedding of raw snapshots [..., K] -> [..., D] (done once per recorded snapshot).

        Samples are first rounded to the precision the training traces stored them in (float16 in
        schema 1), so that at runtime tiny steps look exactly as they did in training; the rounding
        is relative, so scale invariance holds up to it (exactly for power-of-two factors).
        """
        return x.to(SAMPLE_DTYPES[self.cfg.sample_dtype]).to(self.projection.dtype) @ self.projection

    def _attend(self, h: Tensor) -> Tensor:
        """Latest token queries all tokens; keys/values folded into the query so cost is O(W*H)."""
        n, _, hid = h.shape
        heads, dh = self.cfg.heads, hid // self.cfg.heads
        q = self.q(h[:, -1]).view(n, heads, dh)
        # score_hw = q_h . (Wk_h h_w) = (Wk_h^T q_h) . h_w
        qk = torch.einsum("nhd,hde->nhe", q, self.k.weight.view(heads, dh, hid))
        scores = qk @ h.transpose(1, 2) / math.sqrt(dh)  # [N, heads, W]
        attn = F.dropout(scores.softmax(dim=-1), self.cfg.dropout, self.training)
        pooled = attn @ h  # [N, heads, H]
        ctx = torch.einsum("nhe,hde->nhd", pooled, self.v.weight.view(heads, dh, hid))
        ctx = ctx.reshape(n, hid) + self.v.bias
        return self.out(ctx)

    @torch.no_grad()
    def set_standardisation(self, emb: Tensor) -> None:
        """Fit the feature means/stds on training windows [N, W, D] (std floored to avoid blow-ups)."""
        tokens, window_feats = window_features(emb)
        flat = tokens.reshape(-1, TOKEN_FEATURES)
        self.token_mean.copy_(flat.mean(0))
        self.token_std.copy_(flat.std(0).clamp_min(1e-3))
        self.window_mean.copy_(window_feats.mean(0))
        self.window_std.copy_(window_feats.std(0).clamp_min(1e-3))

    def forward_embedded(self, emb: Tensor) -> Tensor:
        """Logits [N] from a window of embedded snapshots [N, W, D]."""
        tokens, window_feats = window_features(emb)
        tokens = (tokens - self.token_mean) / self.token_std
        window_feats = (window_feats - self.window_mean) / self.window_std
        h = self.norm(self.token(tokens).add_(self.time))
        ctx = self._attend(h)
        logit = self.head(torch.cat([ctx, h[:, -1], window_feats], dim=-1)) + self.skip(window_feats)
        return logit.squeeze(-1)

    def forward(self, windows: Tensor) -> Tensor:
        """Logits [N] from raw windows [N, W, K]."""
        return self.forward_embedded(self.embed(windows))
