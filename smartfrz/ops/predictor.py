"""The attention freeze predictor's forward pass as pure functions of its inputs and parameters.

One definition serves two callers: ``smartfrz.predictor.model.AttentionPredictorNet`` trains through
it (autograd, dropout), and with dropout off it is the reference of the fused native op
``smartfrz::predictor_logits`` (:func:`predictor_logits`), which the runtime calls at every freezing
stage. The parameters travel as a list in the order of :data:`PREDICTOR_PARAMS` (the network's
state-dict names).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from smartfrz.ops._schemas import PREDICTOR_PARAMS
from smartfrz.ops.reference import _require

TOKEN_FEATURES = 5
WINDOW_FEATURES = 9
LAYER_NORM_EPS = 1e-5
_LOG_FLOOR = 1e-12  # ratios below this are clamped so logs stay finite
_TINY = 1e-30  # guards divisions for all-zero windows (the only case scale invariance cannot hold)
_P = {name: i for i, name in enumerate(PREDICTOR_PARAMS)}


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
    relative step, and the share of the window that is filled. Steps and their dot products are taken
    from the step vectors e_t - e_{t-1} themselves: derived from a Gram matrix of the displacements to
    the latest snapshot, a small step is lost to cancellation (a window that sat still and then moved
    gave noise over a near-zero norm, and NaN logits). Cosines are clamped to [-1, 1] and the path
    efficiency to [0, 1], their ranges, against the last rounding.
    """
    n, w, _ = emb.shape
    if valid is None:
        valid = full_mask(emb)
    n_valid = valid.sum(dim=1)  # [N]
    if not bool(valid.all()):  # full windows (the runtime's usual case) need no filling
        first = emb[torch.arange(n, device=emb.device), w - n_valid]  # [N, D] earliest real snapshot
        emb = torch.where(valid.unsqueeze(-1), emb, first.unsqueeze(1))
    ref = emb[:, -1].norm(dim=-1, keepdim=True)  # [N, 1]
    d = emb - emb[:, -1:]  # displacement to the latest snapshot
    moves = emb[:, 1:] - emb[:, :-1]  # [N, W-1, D] step vectors, t = 1..W-1
    dist = d[:, :-1].norm(dim=-1)  # [N, W-1], t = 0..W-2
    step = moves.norm(dim=-1)  # ||e_t - e_{t-1}||, t = 1..W-1
    step_ok = valid[:, :-1]  # step t is real when snapshot t-1 is (the valid part is a suffix)
    okf = step_ok.to(emb.dtype)
    n_steps = okf.sum(dim=1, keepdim=True)  # >= 1 for windows of >= 2 snapshots
    count = n_steps.clamp_min(1)
    consec_dot = (moves[:, 1:] * moves[:, :-1]).sum(dim=-1)  # [N, W-2]
    along_dot = -(moves * d[:, :1]).sum(dim=-1)  # step . (e_latest - e_first)
    spread = _masked_mean(dist.pow(2), okf, count).sqrt()  # [N, 1] (dist t real exactly when step t+1 is)
    mean_step = _masked_mean(step, okf, count)
    net = dist[:, :1]  # padded positions hold the first real snapshot
    consec_ok = valid[:, :-2]  # consecutive-step cosine t (t = 2..W-1) is real when snapshot t-2 is
    cos = consec_dot / (step[:, 1:] * step[:, :-1] + _TINY)
    consec = F.pad(torch.where(consec_ok, cos.clamp(-1.0, 1.0), 0.0), (1, 0))
    log_step = _log_ratio(step, ref)
    along = (along_dot / (step * net + _TINY)).clamp(-1.0, 1.0)
    step_feats = torch.stack([step / (mean_step + _TINY), log_step, consec, along], dim=-1)
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
            (net / ((step * okf).sum(dim=1, keepdim=True) + _TINY)).clamp(0.0, 1.0),  # path efficiency
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


def context_inputs(context: Tensor) -> Tensor:
    """[N, 2C] from context [N, C]: the values (unknown NaN -> 0), then one 'unknown' flag per column."""
    unknown = torch.isnan(context)
    return torch.cat([torch.where(unknown, torch.zeros_like(context), context), unknown.to(context.dtype)], dim=1)


def _attend(h: Tensor, valid: Tensor, p: Sequence[Tensor], heads: int, dropout: float, training: bool) -> Tensor:
    """Latest token queries all tokens; keys/values folded into the query so cost is O(W*H)."""
    n, _, hid = h.shape
    dh = hid // heads
    q = F.linear(h[:, -1], p[_P["q.weight"]], p[_P["q.bias"]]).view(n, heads, dh)
    # score_hw = q_h . (Wk_h h_w) = (Wk_h^T q_h) . h_w; head-batched bmm, not einsum (its overhead dominates here)
    qk = torch.bmm(q.transpose(0, 1), p[_P["k.weight"]].view(heads, dh, hid)).transpose(0, 1)  # [N, heads, H]
    scores = (torch.bmm(qk, h.transpose(1, 2)) / math.sqrt(dh)).masked_fill(~valid[:, None, :], float("-inf"))
    attn = F.dropout(scores.softmax(dim=-1), dropout, training)
    pooled = torch.bmm(attn, h)  # [N, heads, H]
    v_weight = p[_P["v.weight"]].view(heads, dh, hid).transpose(1, 2)
    ctx = torch.bmm(pooled.transpose(0, 1), v_weight)  # [heads, N, dh]
    ctx = ctx.transpose(0, 1).reshape(n, hid) + p[_P["v.bias"]]
    return F.linear(ctx, p[_P["out.weight"]], p[_P["out.bias"]])


def attention_logits(
    emb: Tensor,
    valid: Tensor,
    context: Tensor,
    params: Sequence[Tensor],
    heads: int,
    dropout: float = 0.0,
    training: bool = False,
) -> Tensor:
    """Logits [N] from embedded windows [N, W, D], valid [N, W] (a suffix), context [N, C] (NaN = unknown).

    Standardised scale-free tokens go through a small MLP, a learned time embedding and LayerNorm; the
    latest token queries the window; an MLP head reads the attended vector, the latest token and the
    window summary (standardised window features and the context), plus a linear skip on the summary.
    """
    p = params
    tokens, window_feats = window_features(emb, valid)
    tokens = (tokens - p[_P["token_mean"]]) / p[_P["token_std"]]
    window_feats = (window_feats - p[_P["window_mean"]]) / p[_P["window_std"]]
    summary = torch.cat([window_feats, context_inputs(context)], dim=1)
    hidden = F.relu(F.linear(tokens, p[_P["token.0.weight"]], p[_P["token.0.bias"]]))
    h = F.linear(hidden, p[_P["token.2.weight"]], p[_P["token.2.bias"]]) + p[_P["time"]]
    h = F.layer_norm(h, h.shape[-1:], p[_P["norm.weight"]], p[_P["norm.bias"]], LAYER_NORM_EPS)
    attended = _attend(h, valid, p, heads, dropout, training)
    z = F.gelu(F.linear(torch.cat([attended, h[:, -1], summary], dim=-1), p[_P["head.0.weight"]], p[_P["head.0.bias"]]))
    z = F.dropout(z, dropout, training)
    logit = F.linear(z, p[_P["head.3.weight"]], p[_P["head.3.bias"]]) + F.linear(
        summary, p[_P["skip.weight"]], p[_P["skip.bias"]]
    )
    return logit.squeeze(-1)


def check_predictor_inputs(emb: Tensor, valid: Tensor, context: Tensor, params: Sequence[Tensor], heads: int) -> None:
    """Validate the arguments of ``predictor_logits`` from shapes, dtypes and devices (reference and fake kernels)."""
    op = "smartfrz.predictor_logits"
    _require(emb.dtype == torch.float32, TypeError, f"{op}: emb must be float32, got {emb.dtype}")
    _require(
        emb.dim() == 3 and emb.shape[1] >= 2, ValueError, f"{op}: emb must be [N, W>=2, D], got {tuple(emb.shape)}"
    )
    n, w, _ = emb.shape
    _require(valid.dtype == torch.bool, TypeError, f"{op}: valid must be bool, got {valid.dtype}")
    _require(tuple(valid.shape) == (n, w), ValueError, f"{op}: valid must be [{n}, {w}], got {tuple(valid.shape)}")
    _require(context.dtype == torch.float32, TypeError, f"{op}: context must be float32, got {context.dtype}")
    _require(
        context.dim() == 2 and context.shape[0] == n,
        ValueError,
        f"{op}: context must be [{n}, C], got {tuple(context.shape)}",
    )
    _require(
        len(params) == len(PREDICTOR_PARAMS),
        ValueError,
        f"{op}: params must be the {len(PREDICTOR_PARAMS)} tensors {PREDICTOR_PARAMS}, got {len(params)}",
    )
    for name, t in zip(PREDICTOR_PARAMS, params, strict=True):
        _require(t.dtype == torch.float32, TypeError, f"{op}: param {name} must be float32, got {t.dtype}")
    for name, t in (("valid", valid), ("context", context), *zip(PREDICTOR_PARAMS, params, strict=True)):
        _require(t.device == emb.device, ValueError, f"{op}: {name} is on {t.device}, emb on {emb.device}")
    for name in ("token.0.weight", "head.0.weight"):  # they give the hidden and head widths
        _require(
            params[_P[name]].dim() == 2,
            ValueError,
            f"{op}: param {name} must be 2-D, got {tuple(params[_P[name]].shape)}",
        )
    hid, head_hidden = params[_P["token.0.weight"]].shape[0], params[_P["head.0.weight"]].shape[0]
    ok = heads >= 1 and hid >= 1 and hid % heads == 0
    _require(ok, ValueError, f"{op}: hidden={hid} must be a positive multiple of heads={heads} >= 1")
    summary = WINDOW_FEATURES + 2 * context.shape[1]
    for name, shape in predictor_param_shapes(w, emb.shape[2], hid, head_hidden, summary).items():
        got = tuple(params[_P[name]].shape)
        _require(got == shape, ValueError, f"{op}: param {name} must have shape {shape}, got {got}")


def predictor_param_shapes(w: int, d: int, hid: int, head_hidden: int, summary: int) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter for window W, hidden size H, head width and summary width (9 + 2C)."""
    return {
        "token_mean": (TOKEN_FEATURES,),
        "token_std": (TOKEN_FEATURES,),
        "window_mean": (WINDOW_FEATURES,),
        "window_std": (WINDOW_FEATURES,),
        "token.0.weight": (hid, TOKEN_FEATURES),
        "token.0.bias": (hid,),
        "token.2.weight": (hid, hid),
        "token.2.bias": (hid,),
        "time": (w, hid),
        "norm.weight": (hid,),
        "norm.bias": (hid,),
        "q.weight": (hid, hid),
        "q.bias": (hid,),
        "k.weight": (hid, hid),
        "v.weight": (hid, hid),
        "v.bias": (hid,),
        "out.weight": (hid, hid),
        "out.bias": (hid,),
        "head.0.weight": (head_hidden, 2 * hid + summary),
        "head.0.bias": (head_hidden,),
        "head.3.weight": (1, head_hidden),
        "head.3.bias": (1,),
        "skip.weight": (1, summary),
        "skip.bias": (1,),
    }


def check_valid_suffix(valid: Tensor) -> None:
    """Each row of ``valid`` must be a suffix of True values ending at the latest snapshot (data-dependent)."""
    if valid.numel() == 0:
        return
    ok = bool(valid[:, -1].all()) and bool((valid[:, 1:] >= valid[:, :-1]).all())
    _require(
        ok,
        ValueError,
        "smartfrz.predictor_logits: each row of valid must be a suffix of True ending at the latest snapshot",
    )


def predictor_logits(emb: Tensor, valid: Tensor, context: Tensor, params: Sequence[Tensor], heads: int) -> Tensor:
    """Reference kernel of ``smartfrz::predictor_logits``: the eval-mode forward (no dropout), logits [N] float32."""
    check_predictor_inputs(emb, valid, context, params, heads)
    check_valid_suffix(valid)
    with torch.no_grad():
        return attention_logits(emb, valid, context, params, heads).contiguous()
