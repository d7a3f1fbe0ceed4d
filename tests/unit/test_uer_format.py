"""UER-format .bin: exact key layout, round trip, partial loads and clear errors."""

from __future__ import annotations

import pytest
import torch
from test_models import HIDDEN, VOCAB, make_batch, make_model

from uer.errors import UerError
from uer.io.uer_format import from_uer_state_dict, load_into_model, load_uer_bin, save_uer_bin, to_uer_state_dict

H, F, V = HIDDEN, 2 * HIDDEN, VOCAB


def transformer_layer(prefix: str) -> dict[str, tuple[int, ...]]:
    """One UER transformer layer's keys under ``prefix`` (``encoder.transformer.L``)."""
    keys = {}
    for index in range(3):  # query, key, value
        keys[f"{prefix}.self_attn.linear_layers.{index}.weight"] = (H, H)
        keys[f"{prefix}.self_attn.linear_layers.{index}.bias"] = (H,)
    keys.update(
        {
            f"{prefix}.self_attn.final_linear.weight": (H, H),
            f"{prefix}.self_attn.final_linear.bias": (H,),
            f"{prefix}.layer_norm_1.gamma": (H,),
            f"{prefix}.layer_norm_1.beta": (H,),
            f"{prefix}.feed_forward.linear_1.weight": (F, H),
            f"{prefix}.feed_forward.linear_1.bias": (F,),
            f"{prefix}.feed_forward.linear_2.weight": (H, F),
            f"{prefix}.feed_forward.linear_2.bias": (H,),
            f"{prefix}.layer_norm_2.gamma": (H,),
            f"{prefix}.layer_norm_2.beta": (H,),
        }
    )
    return keys


def embedding(emb: int, segments: bool = True) -> dict[str, tuple[int, ...]]:
    keys = {
        "embedding.word_embedding.weight": (V, emb),
        "embedding.position_embedding.weight": (512, emb),
        "embedding.layer_norm.gamma": (emb,),
        "embedding.layer_norm.beta": (emb,),
    }
    if segments:
        keys["embedding.segment_embedding.weight"] = (3, emb)
    return keys


def mlm_target(emb: int) -> dict[str, tuple[int, ...]]:
    return {
        "target.mlm_linear_1.weight": (emb, H),
        "target.mlm_linear_1.bias": (emb,),
        "target.layer_norm.gamma": (emb,),
        "target.layer_norm.beta": (emb,),
        "target.mlm_linear_2.weight": (V, emb),
        "target.mlm_linear_2.bias": (V,),
    }


def sentence_pair(task: str) -> dict[str, tuple[int, ...]]:
    return {
        f"target.{task}_linear_1.weight": (H, H),
        f"target.{task}_linear_1.bias": (H,),
        f"target.{task}_linear_2.weight": (2, H),
        f"target.{task}_linear_2.bias": (2,),
    }


BERT_ENCODER = {**transformer_layer("encoder.transformer.0"), **transformer_layer("encoder.transformer.1")}
LAYOUTS = {
    "mlm": {**embedding(H), **BERT_ENCODER, **mlm_target(H)},
    "bert": {**embedding(H), **BERT_ENCODER, **mlm_target(H), **sentence_pair("nsp")},
    "albert": {
        **embedding(16),
        "encoder.linear.weight": (H, 16),
        "encoder.linear.bias": (H,),
        **transformer_layer("encoder.transformer"),
        **mlm_target(16),
        **sentence_pair("sop"),
    },
    "gpt": {
        **embedding(H, segments=False),
        **BERT_ENCODER,
        "target.output_layer.weight": (V, H),
        "target.output_layer.bias": (V,),
    },
}


def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in state.items()}


def random_uer_file(arch: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {key: torch.randn(shape, generator=gen) for key, shape in LAYOUTS[arch].items()}


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_written_file_has_the_uer_layout(arch, tmp_path):
    path = tmp_path / "model.bin"
    save_uer_bin(make_model(arch), path)
    assert shapes(load_uer_bin(path)) == LAYOUTS[arch]
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]  # no temporary file left


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_round_trip_gives_identical_outputs(arch, tmp_path):
    path = tmp_path / "model.bin"
    original = make_model(arch, seed=0).eval()
    save_uer_bin(original, path)
    fresh = make_model(arch, seed=1).eval()
    report = load_into_model(fresh, from_uer_state_dict(load_uer_bin(path)), source=str(path))
    assert report.missing == [] and report.unexpected == []
    batch = make_batch(arch)
    torch.testing.assert_close(fresh(batch).loss, original(batch).loss, rtol=0, atol=0)
    torch.testing.assert_close(fresh.state_dict(), original.state_dict(), rtol=0, atol=0)


def test_original_layout_loads_into_matching_model():
    uer = random_uer_file("bert")
    model = make_model("bert")
    report = load_into_model(model, from_uer_state_dict(uer))
    assert report.missing == [] and report.unexpected == []
    layer = model.backbone.encoder.transformer[1]
    prefix = "encoder.transformer.1"
    expected_qkv = torch.cat([uer[f"{prefix}.self_attn.linear_layers.{i}.weight"] for i in range(3)])
    assert torch.equal(layer.self_attn.qkv.weight, expected_qkv)
    assert torch.equal(layer.layer_norm_2.weight, uer[f"{prefix}.layer_norm_2.gamma"])
    assert torch.equal(model.target.nsp_linear_2.bias, uer["target.nsp_linear_2.bias"])
    # tied output matrix: the file's copy differs here; the word embedding wins, and the report says so
    word = model.backbone.embedding.word_embedding.weight
    assert torch.equal(word, uer["embedding.word_embedding.weight"])
    assert model.target.mlm_linear_2.weight is word
    assert report.untied == ["target.mlm_linear_2.weight"]


def test_file_without_tied_copy_loads_completely():
    uer = random_uer_file("albert")
    del uer["target.mlm_linear_2.weight"]
    model = make_model("albert")
    report = load_into_model(model, from_uer_state_dict(uer))
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(model.target.mlm_linear_2.weight, uer["embedding.word_embedding.weight"])


def test_partial_load_reports_missing_and_unexpected():
    uer = {key: value for key, value in random_uer_file("bert").items() if not key.startswith("target.nsp")}
    uer["output_layer_1.weight"] = torch.zeros(H, H)
    model = make_model("bert")
    before = model.target.nsp_linear_1.weight.clone()
    report = load_into_model(model, from_uer_state_dict(uer))
    assert sorted(report.missing) == sorted(sentence_pair("nsp"))  # target names are the same in both layouts
    assert report.unexpected == ["output_layer_1.weight"]
    assert torch.equal(model.target.nsp_linear_1.weight, before)
    text = str(report)
    assert "initialised, not in the file (4): target.nsp_linear_1.weight" in text
    assert "not used, no place in this model (1): output_layer_1.weight" in text


def test_pretrained_file_loads_into_bare_backbone():
    backbone = make_model("bert").backbone
    report = load_into_model(backbone, from_uer_state_dict(random_uer_file("bert"), backbone_prefix=""))
    assert report.missing == []
    assert report.unexpected and all(key.startswith("target.") for key in report.unexpected)


def test_shape_clash_names_key_and_both_shapes():
    uer = random_uer_file("bert")
    uer["encoder.transformer.0.feed_forward.linear_1.weight"] = torch.zeros(7, H)
    with pytest.raises(UerError) as err:
        load_into_model(make_model("bert"), from_uer_state_dict(uer), source="pretrained.bin")
    message = str(err.value)
    assert "pretrained.bin" in message and "backbone.encoder.transformer.0.feed_forward.linear_1.weight" in message
    assert f"(7, {H})" in message and f"({F}, {H})" in message


def test_incomplete_attention_projection_is_a_user_error():
    uer = random_uer_file("bert")
    del uer["encoder.transformer.1.self_attn.linear_layers.2.bias"]
    with pytest.raises(UerError, match=r"encoder\.transformer\.1\.self_attn\.linear_layers\.2\.bias is missing"):
        from_uer_state_dict(uer)


def test_mapping_is_invertible():
    state = make_model("albert").state_dict()
    assert from_uer_state_dict(to_uer_state_dict(state)).keys() == state.keys()


@pytest.mark.parametrize(
    "content",
    [b"not a torch file", None, "list"],
    ids=["garbage", "missing", "not-a-dict"],
)
def test_unreadable_file_is_a_user_error(content, tmp_path):
    path = tmp_path / "broken.bin"
    if content == "list":
        torch.save([torch.zeros(1)], path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UerError, match="broken.bin"):
        load_uer_bin(path)
