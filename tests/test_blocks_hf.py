"""Block discovery for the Hugging Face classifiers users fine-tune: RoBERTa, DistilBERT, ViT, GPT-2.

Tiny randomly initialised configs (no downloads); the discovered blocks must compose to the model's
forward, with and without padding masks, and every judged layer must sit in a block.
"""

from __future__ import annotations

import pytest
import torch

from smartfrz.blocks import check_split, discover_blocks, layer_block_index, run_blocks
from smartfrz.layers import find_layers
from smartfrz.runtime import FreezeOut, Freezer

transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")

PAD = 1


def _roberta(attn: str) -> torch.nn.Module:
    config = transformers.RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=24, num_labels=3, pad_token_id=PAD, initializer_range=0.5, attn_implementation=attn,
    )  # fmt: skip
    return transformers.RobertaForSequenceClassification(config)


def _distilbert(attn: str) -> torch.nn.Module:
    config = transformers.DistilBertConfig(
        vocab_size=50, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=24, num_labels=3,
        pad_token_id=PAD, initializer_range=0.5, attn_implementation=attn,
    )  # fmt: skip
    return transformers.DistilBertForSequenceClassification(config)


def _gpt2(attn: str) -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=24, num_labels=3, pad_token_id=PAD,
        initializer_range=0.5, bos_token_id=0, eos_token_id=0, attn_implementation=attn,
    )  # fmt: skip
    return transformers.GPT2ForSequenceClassification(config)


def _vit(attn: str) -> torch.nn.Module:
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3, initializer_range=0.5, attn_implementation=attn,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config)


TEXT = {
    "roberta": (_roberta, "roberta", "encoder.layer"),
    "distilbert": (_distilbert, "distilbert", "transformer.layer"),
    "gpt2": (_gpt2, "transformer", "h"),
}


def _padded_ids(left: bool = False) -> torch.Tensor:
    """Token ids with padding in two rows, on the right or the left (ids >= 2: none is the pad id by chance)."""
    ids = torch.randint(2, 50, (4, 10), generator=torch.Generator().manual_seed(0))
    ids[0, 6:] = PAD
    ids[2, 3:] = PAD
    return ids.flip(1) if left else ids


def _build(make, attn: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return make(attn).eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", sorted(TEXT))
def test_text_blocks_compose_to_the_forward(kind: str, attn: str) -> None:
    """Embeddings, each layer, head: run in order they give the model's logits, with and without a mask."""
    make, base, where = TEXT[kind]
    model = _build(make, attn)
    blocks = discover_blocks(model)
    assert [b.name for b in blocks] == [f"{base}.embeddings", f"{base}.{where}.0", f"{base}.{where}.1", "head"]
    ids = _padded_ids(left=kind == "gpt2")  # GPT-2 reads the last token: only left padding changes it
    mask = (ids != PAD).long()
    with torch.no_grad():
        plain, masked = model(ids).logits, model(ids, attention_mask=mask).logits
        assert torch.allclose(run_blocks(blocks, ids), plain, atol=1e-6, rtol=1e-5)
        assert torch.allclose(run_blocks(blocks, (ids, mask)), masked, atol=1e-6, rtol=1e-5)
        assert (plain - masked).abs().max() > 1e-3 * plain.abs().max()  # the mask really matters
        middle = run_blocks(blocks, (ids, mask), 0, 2)  # a cached activation: per-sample rows, batch first
        assert all(t.shape[0] == 4 for t in middle)
        assert torch.allclose(run_blocks(blocks, middle, 2), masked, atol=1e-6, rtol=1e-5)
    check_split(model, blocks, ids)
    index = layer_block_index(model, blocks)
    assert len(index) == len(find_layers(model)) and max(index.values()) == len(blocks) - 1
    assert sorted(set(index.values())) == list(range(len(blocks)))  # every block has judged layers


def test_gpt2_head_reads_the_last_non_padding_token() -> None:
    """GPT-2 pools the rightmost non-pad token; the embeddings block carries its index per sample."""
    model = _build(_gpt2, "eager")
    blocks = discover_blocks(model)
    _, _, last = blocks[0].forward(_padded_ids())
    assert last[:, 0].tolist() == [5, 9, 2, 9]
    _, _, last = blocks[0].forward(_padded_ids(left=True))
    assert last[:, 0].tolist() == [9, 9, 9, 9]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_vit_blocks_compose_to_the_forward(attn: str) -> None:
    """Patch embeddings, each encoder layer, final norm + classifier on the class token."""
    model = _build(_vit, attn)
    blocks = discover_blocks(model)
    assert [b.name for b in blocks] == ["vit.embeddings", "vit.layers.0", "vit.layers.1", "head"]
    pixels = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(run_blocks(blocks, pixels), model(pixels).logits, atol=1e-6, rtol=1e-5)
    check_split(model, blocks, pixels)
    assert len(layer_block_index(model, blocks)) == len(find_layers(model))


def test_decoder_only_lm_with_tied_embeddings_is_not_split() -> None:
    """GPT-2's LM head shares the embedding matrix: no prefix can freeze alone, so discovery says how to proceed."""
    config = transformers.GPT2Config(
        vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=24, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    with pytest.raises(ValueError, match="cannot split GPT2LMHeadModel"):
        discover_blocks(model)


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "gpt2"])
def test_freezer_serves_hf_text_prefix_from_the_cache(kind: str) -> None:
    """With the cache on, frozen HF blocks are served per index and the freezer trains the rest."""
    make, _, _ = TEXT[kind]
    model = _build(make, "eager").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(
        model, opt, FreezeOut(total_steps=6, t0=0.3), cache=True, deterministic_inputs=True, verbose=False
    )
    ids = _padded_ids()
    labels = torch.tensor([0, 1, 2, 0])
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(freezer(ids, torch.arange(4)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        freezer.step()
    assert freezer.num_frozen == 3 and freezer.cache is not None and freezer.cache.hits > 0
