"""The Hugging Face family registry (uer/io/hf_families.py) and the model options the families need.

The options (``encoder.layernorm_positioning``, ``embedding.remove_layernorm``, ``target.output_bias``) are checked
against their formulas, the key/value cache and activation checkpointing; their defaults against the models and
checkpoints written before them.  The registry's table of transformers' defaults is checked against transformers
itself, so a config.json that leaves a default out is read as transformers reads it.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from omegaconf import OmegaConf

from tokenizer_testing import byte_level_bpe, model_dir
from tool_testing import make_model, write_vocab
from uer.errors import UerError
from uer.io import hf_families
from uer.io.hf_families import FAMILIES, NotExpressible, family_for, swap_vocab_rows
from uer.models import build_backbone, build_model
from uer.tokenizers import build_tokenizer
from uer.tokenizers.hf import swap_pad
from uer_testing import compose_config

GPT2 = ("encoder=gpt", "target=lm", "encoder.layernorm_positioning=pre", "embedding.remove_layernorm=true",
        "target.output_bias=false")
CONFIG_CLASSES = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig,
                  "xlm-roberta": transformers.XLMRobertaConfig, "electra": transformers.ElectraConfig,
                  "albert": transformers.AlbertConfig, "gpt2": transformers.GPT2Config}
ROBERTA_ROLES = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
                 "mask_token": "<mask>"}


@pytest.fixture()
def vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt")


# --- the registry ---------------------------------------------------------------------------

def test_every_model_type_has_a_family_and_its_defaults_are_transformers_own():
    assert set(FAMILIES) == set(CONFIG_CLASSES)
    for name, fam in FAMILIES.items():
        assert fam.model_type == name
        reference = CONFIG_CLASSES[name]()
        for key, value in fam.defaults.items():
            assert getattr(reference, key) == value, (name, key)
        for _, (architecture, _) in fam.classes.items():
            assert hasattr(transformers, architecture), architecture


def test_an_unknown_model_type_names_what_uer_builds():
    with pytest.raises(NotExpressible, match="model_type 'llama' is not a family uer builds; it builds bert, "
                                             "roberta, xlm-roberta, electra, albert, gpt2"):
        hf_families.family("llama", "DIR/config.json")


def test_swapping_the_padding_row_is_its_own_inverse_and_keeps_ties():
    word = torch.arange(12.0).view(6, 2)
    state = {hf_families.WORD: word, hf_families.DECODER: word, "target.mlm_linear_2.bias": torch.arange(6.0),
             "encoder.linear.weight": torch.ones(2, 2)}
    swapped = swap_vocab_rows(state, 1)
    assert torch.equal(swapped[hf_families.WORD][0], word[1]) and torch.equal(swapped[hf_families.WORD][1], word[0])
    assert swapped[hf_families.DECODER] is swapped[hf_families.WORD]  # tied stays tied
    assert swapped["target.mlm_linear_2.bias"].tolist() == [1, 0, 2, 3, 4, 5]
    assert swapped["encoder.linear.weight"] is state["encoder.linear.weight"]
    again = swap_vocab_rows(swapped, 1)
    assert all(torch.equal(again[key], state[key]) for key in state)
    assert swap_vocab_rows(state, 0) is state
    assert swap_pad([0, 1, 2, 1], 1) == [1, 0, 2, 0] and swap_pad([0, 1], 0) == [0, 1]


def arch_of(*overrides, vocab):
    _, model, _ = make_model(vocab, *overrides)
    from uer.io.uer_format import to_uer_state_dict

    return hf_families.architecture(to_uer_state_dict(model.state_dict()), "model", {}, {
        "heads_num": 2, "heads_from": "test", "layernorm_eps": 1e-6, "layernorm": "standard", "hidden_act": "gelu",
        "mask": "causal" if "encoder=gpt" in overrides else "fully_visible", "dropout": 0.1, "layers_num": 2})


@pytest.mark.parametrize("name", ["bert", "roberta", "electra", "albert"])
@pytest.mark.parametrize("padding, same_segments", [(True, False), (True, True), (False, False), (False, True)],
                         ids=["padding-two", "padding-one", "zeros-two", "zeros-one"])
def test_segment_rows_go_out_and_come_back_identical(name, padding, same_segments):
    """uer -> HF -> uer keeps all three segment rows; a zero padding row stays out (HF -> uer -> HF keeps the
    file's 2 token types, RoBERTa's 1)."""
    fam = FAMILIES[name]
    rows = torch.randn(3, 4)
    rows[0] *= padding
    if same_segments:
        rows[2] = rows[1]
    arch = {"type_vocab_size": 1 if same_segments else 2, "padding_segment": padding}
    out = fam.segment_out(rows, arch)
    types = 1 if same_segments and fam.one_segment_row else 2
    assert out.size(0) == fam.type_vocab_size(arch) == (3 if padding else types)
    assert fam.token_types(arch) == types
    assert torch.equal(out[:2], rows[1:1 + out.size(0)][:2])  # token types 0 (and 1) are uer's segments 1 (and 2)
    assert torch.equal(fam.segment_in(out, "token_type_embeddings", "x"), rows)


@pytest.mark.parametrize("overrides, expected", [
    (("target=bert",), "bert"),
    (("target=mlm", "model.emb_size=16"), "electra"),  # a projection without a shared layer
    (("target=albert", "size=albert_base", "model.emb_size=16", "model.hidden_size=32"), "albert"),
    (GPT2, "gpt2"),
])
def test_the_family_a_shape_needs(vocab, overrides, expected):
    assert family_for(arch_of(*overrides, vocab=vocab)).model_type == expected


def test_a_shape_no_family_holds_is_refused_with_each_family_s_reason(vocab):
    arch = arch_of("encoder=gpt", "target=lm", vocab=vocab)  # UER's GPT: post-LN, causal, embedding LayerNorm
    with pytest.raises(NotExpressible) as err:
        family_for(arch)
    message = str(err.value)
    assert message.startswith("no Hugging Face family holds this model (bert: BERT adds token type embeddings")
    assert "gpt2: GPT-2 has no embedding LayerNorm; this model has one" in message
    with pytest.raises(NotExpressible, match="GPT-2's lm_head has no bias"):
        family_for(arch_of(*GPT2[:-1], vocab=vocab))
    with pytest.raises(NotExpressible, match="RoBERTa has no token type embedding|RoBERTa adds token type"):
        family_for(arch_of(*GPT2, vocab=vocab), "roberta")


# --- the padding token of a tokenizer.json ------------------------------------------------------

def test_a_tokenizer_whose_padding_is_not_id_0_is_used_with_ids_swapped(tmp_path):
    """RoBERTa: <s> = 0, <pad> = 1 in the file; inside uer <pad> = 0 and <s> = 1, and the file goes out unchanged."""
    directory = model_dir(tmp_path / "roberta", byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]),
                          ROBERTA_ROLES)
    tokenizer = build_tokenizer({"type": "hf", "tokenizer_path": str(directory)})
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    assert tokenizer.file_pad_id == 1
    assert tokenizer.vocab.id_to_token(0) == "<pad>" and tokenizer.vocab.id_to_token(1) == "<s>"
    assert tokenizer.vocab.pad_id == 0 and tokenizer.vocab.cls_id == 1 and tokenizer.vocab.sep_id == 2
    text = "很好 good book"
    file_ids = raw.encode(text, add_special_tokens=False).ids
    assert tokenizer.encode(text) == swap_pad(file_ids, 1) == file_ids  # ordinary tokens keep their ids
    assert tokenizer.encode_batch([text]) == [tokenizer.encode(text)]
    assert tokenizer.convert_tokens_to_ids(["<s>", "<pad>"]) == [1, 0]
    assert tokenizer.decode(tokenizer.encode(text)) == raw.decode(file_ids)
    assert tokenizer.decode([1]) == "<s>" and tokenizer.decode([0]) == "<pad>"
    exported = Tokenizer.from_str(tokenizer.exported_json())
    assert exported.encode(text).ids == [0, *file_ids, 2]  # the file's <s> and </s>
    assert exported.encode(text, "good").type_ids[-1] == 1
    assert set(Tokenizer.from_str(tokenizer.exported_json(1)).encode(text, "good").type_ids) == {0}
    # the stored record is the file itself: the identity of a tokenizer with padding at 0 is unchanged
    assert tokenizer.stored["json"] == (directory / "tokenizer.json").read_text(encoding="utf-8")


# --- the model options ----------------------------------------------------------------------------

def test_defaults_keep_every_model_as_it_was(vocab):
    """Post-LN, an embedding LayerNorm, an lm bias: the state dicts name what they always named."""
    for overrides in (("target=bert",), ("encoder=gpt", "target=lm")):
        cfg, model, _ = make_model(vocab, *overrides)
        keys = set(model.state_dict())
        assert "backbone.embedding.layer_norm.weight" in keys and "backbone.encoder.layer_norm.weight" not in keys
        assert cfg.encoder.layernorm_positioning == "post" and cfg.embedding.remove_layernorm is False
    assert "target.output_layer.bias" in keys and cfg.target.output_bias is True


def test_a_stored_config_without_the_new_keys_builds_the_old_model(vocab):
    """Checkpoints written before these options recorded no such keys: they load with the old behaviour."""
    cfg, model, _ = make_model(vocab, "encoder=gpt", "target=lm")
    stored = {node: OmegaConf.to_container(cfg[node], resolve=True) for node in ("embedding", "encoder", "target")}
    del stored["embedding"]["remove_layernorm"], stored["encoder"]["layernorm_positioning"]
    del stored["target"]["output_bias"]
    vocab_size = model.backbone.embedding.word_embedding.num_embeddings
    again = build_model(stored["embedding"], stored["encoder"], stored["target"], vocab_size)
    again.load_state_dict(model.state_dict())  # strict: the same tensors
    src = torch.randint(5, 35, (2, 9), generator=torch.Generator().manual_seed(0))
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model.backbone(src, torch.ones_like(src)), again.backbone(src, torch.ones_like(src)))


@torch.no_grad()
def test_pre_layernorm_layers_compute_gpt2_s_formula(vocab):
    _, model, _ = make_model(vocab, *GPT2, seed=2)
    model.eval()
    backbone = model.backbone
    assert backbone.embedding.layer_norm is None and model.target.output_layer.bias is None
    src = torch.randint(5, 35, (2, 7), generator=torch.Generator().manual_seed(1))
    seg = torch.ones_like(src)
    emb = backbone.embedding.word_embedding(src) + backbone.embedding.position_embedding(torch.arange(7))
    torch.testing.assert_close(backbone.embedding(src, seg), emb, rtol=0, atol=0)
    hidden = emb
    mask = torch.ones(7, 7, dtype=torch.bool).tril()
    for layer in backbone.encoder.transformer:
        normed = layer.layer_norm_1(hidden)
        q, k, v = layer.self_attn.qkv(normed).view(2, 7, 3, 2, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2) / k.size(-1) ** 0.5).masked_fill(~mask, float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, -1)
        hidden = hidden + layer.self_attn.final_linear(attended)
        hidden = hidden + layer.feed_forward(layer.layer_norm_2(hidden))
    expected = backbone.encoder.layer_norm(hidden)
    torch.testing.assert_close(backbone(src, seg), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra", [(), ("size=albert_base", "model.emb_size=16", "model.hidden_size=32",
                                        "model.parameter_sharing=true"),
                                   ("embedding=word", "encoder.relative_position_buckets=8", "model.layernorm=rms",
                                    "encoder.bias=false", "encoder.scaled_attention=false",
                                    "encoder.feedforward=gated")], ids=["gpt2", "shared_layer", "t5_options"])
def test_pre_layernorm_incremental_decoding_equals_full_encoding(vocab, extra):
    """tool=generate's key/value cache runs the pre-LN layers and the final LayerNorm too (and T5's options: the
    relative position bias of the new positions over the cached ones)."""
    _, model, _ = make_model(vocab, *GPT2, *extra, seed=4)
    model.eval()
    backbone = model.backbone
    src = torch.randint(5, 35, (2, 13), generator=torch.Generator().manual_seed(0))
    seg = torch.ones_like(src)
    with torch.no_grad():
        full = backbone(src, seg)
        emb = backbone.embedding(src, seg)
        cache = backbone.encoder.new_cache(13)
        parts = [backbone.encoder.forward_incremental(emb[:, :5], cache)]
        parts += [backbone.encoder.forward_incremental(emb[:, t:t + 1], cache) for t in range(5, 13)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_pre_layernorm_gradients_with_recomputation_and_checkpointing(vocab):
    """The feed-forward input rebuilt in backward, and activation checkpointing, give autograd's gradients."""
    _, model, _ = make_model(vocab, *GPT2, "model.dropout=0.0", seed=5)
    src = torch.randint(5, 35, (3, 11), generator=torch.Generator().manual_seed(2))
    batch = {"src": src, "seg": torch.ones_like(src), "lm_labels": torch.roll(src, -1, dims=1)}
    batch["seg"][2, 8:] = 0
    batch["lm_labels"][2, 8:] = -100

    def gradients(recompute: bool, checkpointing: bool):
        copy = make_model(vocab, *GPT2, "model.dropout=0.0", seed=5)[1]
        copy.load_state_dict(model.state_dict())
        copy.train()
        for module in copy.modules():
            if hasattr(module, "recompute"):
                module.recompute = recompute
        if checkpointing:
            copy.backbone.encoder.enable_activation_checkpointing()
        copy(batch).loss.backward()
        return {name: param.grad.clone() for name, param in copy.named_parameters()}

    reference = gradients(False, False)
    for recompute, checkpointing in ((True, False), (False, True)):
        found = gradients(recompute, checkpointing)
        for name, grad in reference.items():
            torch.testing.assert_close(found[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_unknown_layernorm_positioning_is_refused(vocab):
    with pytest.raises(UerError, match="unknown encoder.layernorm_positioning 'middle'; choose one of: post, pre"):
        make_model(vocab, "encoder.layernorm_positioning=middle")


def test_the_options_compose_and_build_from_composed_configs():
    cfg = compose_config(["stage=pretrain", *GPT2, "size=tiny", "model.layers_num=1"])
    assert cfg.encoder.layernorm_positioning == "pre" and cfg.embedding.remove_layernorm is True
    assert cfg.target.output_bias is False
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, 50)
    names = set(model.state_dict())
    assert "backbone.encoder.layer_norm.weight" in names and "target.output_layer.bias" not in names
    assert not any(name.startswith("backbone.embedding.layer_norm") for name in names)
    backbone = build_backbone(cfg.embedding, cfg.encoder, 50)
    assert backbone.encoder.layer_norm is not None
