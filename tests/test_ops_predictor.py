"""``smartfrz::predictor_logits`` (the fused predictor forward) against its reference, opcheck, errors.

The reference is ``smartfrz.ops.predictor.attention_logits`` with dropout off, the function the
predictor trains through; the CPU kernel runs here, the CUDA kernel in the ``gpu``-marked tests.
"""

from __future__ import annotations

import pytest
import torch

import smartfrz.ops as ops
from smartfrz.ops import PREDICTOR_PARAMS
from smartfrz.ops import predictor as ref
from smartfrz.predictor import AttentionPredictorNet, FreezePredictor, LabelRule, ModelConfig

# (window W, embed D, hidden H, heads, head width, context C)
DIMS = [(8, 32, 16, 4, 64, 3), (2, 1, 4, 1, 1, 0), (3, 4, 12, 3, 8, 1), (16, 8, 8, 2, 16, 4), (5, 64, 6, 6, 3, 2)]
TOL = {"rtol": 1e-4, "atol": 1e-4}


def _params(w: int, d: int, hid: int, heads: int, head_hidden: int, c: int, seed: int = 0) -> list[torch.Tensor]:
    """Random parameters of every shape the op takes (standard deviations positive)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = ref.predictor_param_shapes(w, d, hid, head_hidden, ref.WINDOW_FEATURES + 2 * c)
    out = []
    for name in PREDICTOR_PARAMS:
        t = torch.randn(shapes[name], generator=gen) * 0.5
        out.append(t.abs() + 0.1 if name.endswith("_std") else t)
    return out


def _inputs(n: int, w: int, d: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random-walk windows, suffix masks of random lengths (>= 1) and context with some NaN (unknown)."""
    gen = torch.Generator().manual_seed(seed + 1)
    emb = torch.randn(n, w, d, generator=gen).cumsum(dim=1) * torch.rand(n, 1, 1, generator=gen).add(0.01)
    lengths = torch.randint(1, w + 1, (n,), generator=gen)
    valid = torch.arange(w).expand(n, w) >= (w - lengths).unsqueeze(1)
    context = torch.rand(n, c, generator=gen)
    context[torch.rand(n, c, generator=gen) < 0.3] = float("nan")
    return emb, valid, context


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("n", [0, 1, 7, 40])
def test_predictor_logits_matches_reference(dims, n):
    w, d, hid, heads, head_hidden, c = dims
    params = _params(w, d, hid, heads, head_hidden, c)
    emb, valid, context = _inputs(n, w, d, c)
    got = ops.predictor_logits(emb, valid, context, params, heads)
    want = ref.attention_logits(emb, valid, context, params, heads)
    assert got.shape == (n,) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, **TOL)


def test_predictor_logits_on_degenerate_windows():
    """Constant, all-zero and single-snapshot windows: finite, and as the reference says."""
    w, d, hid, heads, head_hidden, c = DIMS[0]
    params = _params(w, d, hid, heads, head_hidden, c)
    emb = torch.zeros(4, w, d)
    emb[1] = torch.randn(d)  # the same snapshot W times
    emb[2, -1] = torch.randn(d)  # one real snapshot after zeros (masked below)
    emb[3] = torch.randn(w, d) * 1e-20  # tiny: ratios near the floors
    valid = torch.ones(4, w, dtype=torch.bool)
    valid[2, :-1] = False
    context = torch.full((4, c), float("nan"))
    got = ops.predictor_logits(emb, valid, context, params, heads)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref.attention_logits(emb, valid, context, params, heads), **TOL)


def test_predictor_logits_reads_strided_inputs():
    """Non-contiguous emb, valid, context and parameters give what their contiguous copies give."""
    w, d, hid, heads, head_hidden, c = DIMS[2]
    params = _params(w, d, hid, heads, head_hidden, c)
    emb, valid, context = _inputs(12, w, d, c)
    emb_t = emb.transpose(1, 2).contiguous().transpose(1, 2)
    valid_t = torch.stack([valid, valid], dim=2)[:, :, 0]
    strided = [p.t().contiguous().t() if p.dim() == 2 else p for p in params]
    assert not emb_t.is_contiguous() and not valid_t.is_contiguous() and not strided[4].is_contiguous()
    got = ops.predictor_logits(emb_t, valid_t, context.t().contiguous().t(), strided, heads)
    torch.testing.assert_close(got, ops.predictor_logits(emb, valid, context, params, heads), **TOL)


def test_windows_that_sat_still_then_moved_give_finite_logits():
    """Tiny steps next to a large final jump: steps are not lost to cancellation (they once gave NaN)."""
    w, d, hid, heads, head_hidden, c = DIMS[0]
    params = _params(w, d, hid, heads, head_hidden, c)
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(d, generator=gen)
    emb = torch.zeros(5, w, d)
    for i in range(5):
        emb[i, :-1] = base + torch.randn(w - 1, d, generator=gen).cumsum(0) * 10.0 ** (-2 - i)
        emb[i, -1] = base + torch.randn(d, generator=gen)
    emb[4, :-1] = base  # exactly still
    valid, context = torch.ones(5, w, dtype=torch.bool), torch.rand(5, c, generator=gen)
    want = ref.attention_logits(emb, valid, context, params, heads)
    got = ops.predictor_logits(emb, valid, context, params, heads)
    assert torch.isfinite(want).all() and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, **TOL)
    tokens, feats = ref.window_features(emb, valid)
    assert tokens[..., 3:].abs().max() <= 1 and ((feats[:, 2] >= 0) & (feats[:, 2] <= 1)).all()  # cosines, efficiency


@pytest.mark.parametrize("dims", DIMS[:3])
def test_opcheck_predictor_logits(dims):
    w, d, hid, heads, head_hidden, c = dims
    params = _params(w, d, hid, heads, head_hidden, c)
    emb, valid, context = _inputs(6, w, d, c)
    op = torch.ops.smartfrz.predictor_logits.default
    torch.library.opcheck(op, (emb, valid, context, params, heads))
    # with parameters that require grad: an autograd kernel is registered (it refuses; see below)
    trainable = [p.clone().requires_grad_() for p in params]
    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(op, (emb, valid, context, trainable, heads), test_utils=checks)


def _good():
    w, d, hid, heads, head_hidden, c = DIMS[0]
    return (*_inputs(3, w, d, c), _params(w, d, hid, heads, head_hidden, c), heads)


def _replace(args, i, value):
    args = list(args)
    args[i] = value
    return args


def _with_param(args, name, value):
    params = list(args[3])
    params[PREDICTOR_PARAMS.index(name)] = value
    return _replace(args, 3, params)


BAD = {
    "emb dtype": (TypeError, lambda a: _replace(a, 0, a[0].double())),
    "emb rank": (ValueError, lambda a: _replace(a, 0, a[0][0])),
    "valid dtype": (TypeError, lambda a: _replace(a, 1, a[1].float())),
    "valid shape": (ValueError, lambda a: _replace(a, 1, a[1][:, 1:])),
    "valid not a suffix": (
        ValueError,
        lambda a: _replace(a, 1, torch.ones_like(a[1]).index_fill(1, torch.tensor([2]), False)),
    ),
    "latest snapshot invalid": (ValueError, lambda a: _replace(a, 1, torch.zeros_like(a[1]))),
    "context dtype": (TypeError, lambda a: _replace(a, 2, a[2].double())),
    "context rows": (ValueError, lambda a: _replace(a, 2, a[2][:1])),
    "context columns vs head": (ValueError, lambda a: _replace(a, 2, a[2][:, :1])),
    "too few params": (ValueError, lambda a: _replace(a, 3, a[3][:-1])),
    "param dtype": (TypeError, lambda a: _with_param(a, "q.bias", a[3][PREDICTOR_PARAMS.index("q.bias")].double())),
    "param shape": (ValueError, lambda a: _with_param(a, "time", a[3][PREDICTOR_PARAMS.index("time")][1:])),
    "heads not dividing hidden": (ValueError, lambda a: _replace(a, 4, 3)),
    "no heads": (ValueError, lambda a: _replace(a, 4, 0)),
    "no hidden units": (ValueError, lambda a: _replace(_with_param(a, "token.0.weight", torch.zeros(0, 5)), 4, 1)),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_predictor_logits_rejects_bad_input_like_the_reference(case):
    exc, make = BAD[case]
    args = make(_good())
    with pytest.raises(exc, match=r"smartfrz\.predictor_logits"):
        ops.predictor_logits(*args)
    with pytest.raises(exc, match=r"smartfrz\.predictor_logits"):
        ref.predictor_logits(*args)


def test_freeze_predictor_uses_the_op_and_matches_the_module_forward(monkeypatch):
    """The runtime path (the fused op) gives the eval-mode module's probabilities, context known or not."""
    real = ops.predictor_logits
    torch.manual_seed(0)
    net = AttentionPredictorNet(ModelConfig(window=6, k=32, embed_dim=8, min_window=3))
    predictor = FreezePredictor(net, 0.5, LabelRule(), {})
    emb, valid, context = _inputs(9, 6, 8, len(net.cfg.context))
    valid[:, -3:] = True  # at least min_window snapshots
    calls = []
    monkeypatch.setattr(ops, "predictor_logits", lambda *a: calls.append(len(a[0])) or real(*a))
    for ctx in (context, None):
        got = predictor.predict_from_embeddings(emb, ctx, valid)
        with torch.no_grad():
            want = torch.sigmoid(net.eval().forward_embedded(emb, ctx, valid))
        torch.testing.assert_close(got, want, **TOL)
    assert calls == [9, 9]


@pytest.mark.gpu
@pytest.mark.parametrize("dims", DIMS)
def test_predictor_logits_cuda_matches_cpu(dims):
    w, d, hid, heads, head_hidden, c = dims
    params = _params(w, d, hid, heads, head_hidden, c)
    emb, valid, context = _inputs(300, w, d, c)  # more windows than one block of threads
    got = ops.predictor_logits(emb.cuda(), valid.cuda(), context.cuda(), [p.cuda() for p in params], heads)
    torch.testing.assert_close(got.cpu(), ref.attention_logits(emb, valid, context, params, heads), **TOL)


@pytest.mark.gpu
def test_predictor_logits_cuda_rejects_a_mask_that_is_not_a_suffix():
    args = _good()
    valid = torch.ones_like(args[1])
    valid[1, 0], valid[1, 1] = True, False
    with pytest.raises(ValueError, match="row 1"):
        ops.predictor_logits(args[0].cuda(), valid.cuda(), args[2].cuda(), [p.cuda() for p in args[3]], args[4])


def test_predictor_logits_refuses_a_backward():
    """Training goes through attention_logits; a backward through the fused op raises instead of giving zeros."""
    w, d, hid, heads, head_hidden, c = DIMS[0]
    params = [p.requires_grad_() for p in _params(w, d, hid, heads, head_hidden, c)]
    out = ops.predictor_logits(*_inputs(3, w, d, c), params, heads)
    with pytest.raises(RuntimeError, match="no gradient"):
        out.sum().backward()
