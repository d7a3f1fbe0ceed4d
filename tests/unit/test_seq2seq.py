"""The encoder-decoder model: decoder=transformer with target=seq2seq.

* T5 (v1.0 and v1.1 layouts) and BART, randomly initialised by transformers from small configs, read through
  their parameter tables (:mod:`uer.io.hf_families`) give transformers' logits; written back, every tensor equals
  the file's (HF -> uer -> HF), and read again every tensor equals ours (uer -> HF -> uer);
* incremental decoding (``start_generation``/``step``/``reorder``) gives the teacher-forced logits, and
  :mod:`uer.models.generation` over it chooses transformers' tokens;
* the model builds from the composed config, trains, and its checkpoint (which records the decoder) resumes
  bit-identically;
* a decoder with an encoder-only target, or target=seq2seq without a decoder: one line, nothing written.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from omegaconf import OmegaConf
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers import models as tokenizer_models

from generation_testing import hf_generate, ragged_batch, tiny_bart
from tool_testing import write_vocab
from uer.app import run_stage
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint, save_checkpoint
from uer.io.hf_families import SEQ2SEQ_FAMILIES, seq2seq_hf_to_uer, seq2seq_uer_to_hf
from uer.io.uer_names import from_uer_state_dict, to_uer_state_dict
from uer.models import Seq2seqModel, build_model
from uer.models.generation import GenerationConfig, generate
from uer.models.compat import check_model
from uer.tokenizers import build_tokenizer
from uer.tokenizers.hf import swap_pad
from uer_testing import compose_config, expect_user_error, run_main, save_model_checkpoint

V = 50
T = transformers
RELATIVE = {"relative_attention_num_buckets": 8, "relative_attention_max_distance": 20}
CASES = {
    "t5-v1.0": (T.T5ForConditionalGeneration,
                lambda **extra: T.T5Config(vocab_size=V, d_model=16, d_kv=8, num_heads=2, d_ff=32, num_layers=2,
                                   num_decoder_layers=3, feed_forward_proj="relu", decoder_start_token_id=0,
                                   **RELATIVE, **extra)),
    "t5-v1.1": (T.T5ForConditionalGeneration,
                lambda: T.T5Config(vocab_size=V, d_model=16, d_kv=8, num_heads=2, d_ff=32, num_layers=2,
                                   num_decoder_layers=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   decoder_start_token_id=0, **RELATIVE)),
    "bart": (T.BartForConditionalGeneration,
             lambda **extra: T.BartConfig(vocab_size=V, d_model=16, encoder_layers=2, decoder_layers=3,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                  decoder_ffn_dim=24, max_position_embeddings=20, scale_embedding=True,
                                  **{"pad_token_id": 0, **extra})),
}


def randomized(model):
    """Every parameter (and BART's final_logits_bias) moved off its initial value, so biases and norms matter."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in [*model.parameters(), *(b for n, b in model.named_buffers() if n == "final_logits_bias")]:
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.2)
    return model.eval()


def source_and_target(start_id: int):
    generator = torch.Generator().manual_seed(2)
    src = torch.randint(3, V, (3, 7), generator=generator)
    src[1, 5:] = 0  # a padded row
    tgt = torch.randint(3, V, (3, 6), generator=generator)
    tgt[:, 0] = start_id
    return src, (src != 0).long(), tgt


def ours_of(uer: dict, nodes: dict) -> tuple[Seq2seqModel, dict]:
    """Our model with the UER state dict's weights, and the tensors it keeps beside them (BART's unused rows)."""
    model = build_model(nodes["embedding"], nodes["encoder"], nodes["target"], V, decoder_cfg=nodes["decoder"])
    ours = from_uer_state_dict(uer)
    expected = model.state_dict()
    assert set(expected) <= set(ours)
    model.load_state_dict({key: ours[key] for key in expected})
    return model.eval(), {key: tensor for key, tensor in ours.items() if key not in expected}


@pytest.fixture(scope="module", params=list(CASES))
def converted(request):
    cls, config = CASES[request.param]
    torch.manual_seed(0)  # transformers initialises from the global generator: the same model whatever ran before
    theirs = randomized(cls(config()))
    fam = SEQ2SEQ_FAMILIES[theirs.config.model_type]
    state = theirs.state_dict()
    uer, nodes = seq2seq_hf_to_uer(fam, state, theirs.config.to_dict(), request.param, "config.json")
    model, kept = ours_of(uer, nodes)
    return request.param, theirs, state, fam, nodes, model, kept


def test_logits_equal_transformers(converted):
    name, theirs, _, _, _, model, _ = converted
    src, seg, tgt = source_and_target(model.decoder_start_id)
    with torch.no_grad():
        expected = theirs(input_ids=src, attention_mask=seg, decoder_input_ids=tgt).logits
        torch.testing.assert_close(model.logits(src, seg, tgt), expected, atol=1e-5, rtol=1e-5)
    assert model.max_target_positions == (20 if name == "bart" else None)


def test_back_to_hugging_face_is_bit_identical_both_ways(converted):
    _, theirs, state, fam, nodes, model, kept = converted
    out, config = seq2seq_uer_to_hf(fam, to_uer_state_dict({**model.state_dict(), **kept}), nodes)
    assert out.keys() <= state.keys()
    for key, tensor in out.items():
        assert torch.equal(tensor, state[key]), key
    again = type(theirs)(type(theirs.config)(**config))
    result = again.load_state_dict(out, strict=False)
    assert not result.unexpected_keys and all("embed_tokens" in key for key in result.missing_keys)
    uer, nodes_again = seq2seq_hf_to_uer(fam, again.state_dict(), again.config.to_dict(), "again", "config.json")
    assert nodes_again == nodes
    model_again, _ = ours_of(uer, nodes_again)
    for key, tensor in model.state_dict().items():
        assert torch.equal(model_again.state_dict()[key], tensor), key


def test_step_by_step_logits_equal_the_teacher_forced_ones(converted):
    _, _, _, _, _, model, _ = converted
    src, seg, tgt = source_and_target(model.decoder_start_id)
    with torch.no_grad():
        full = model.logits(src, seg, tgt)
        state = model.start_generation(src, seg)
        steps = [model.step(tgt[:, 0], state), model.step(tgt[:, 1], state)]
        index = torch.tensor([2, 0, 0, 1])  # beam search: rows selected, repeated and reordered
        model.reorder(state, index)
        steps = [step.index_select(0, index) for step in steps]
        steps += [model.step(tgt[index, i], state) for i in range(2, tgt.size(1))]
    assert all(step.dtype == torch.float32 and step.shape == (4, V) for step in steps)
    torch.testing.assert_close(torch.stack(steps, 1), full[index], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows", [1, 3, 16, 17, 40])
def test_a_steps_logits_are_the_output_layers_for_any_number_of_rows(converted, rows):
    """Up to FEW_ROWS rows :meth:`step_logits` multiplies in the other order (W @ h^T): the same logits."""
    _, _, _, _, _, model, _ = converted
    hidden = torch.randn(rows, model.target.output_layer.in_features, generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        torch.testing.assert_close(model.target.step_logits(hidden), model.target.logits(hidden), atol=1e-5, rtol=1e-5)


# --- the composed model ----------------------------------------------------------------------------

T5_LIKE = ["embedding=word", "embedding.remove_layernorm=true", "model.layernorm=rms",
           *(f"{node}.{key}" for node in ("encoder", "decoder") for key in (
               "layernorm_positioning=pre", "bias=false", "scaled_attention=false", "relative_position_buckets=8",
               "feedforward=gated")), "target.tie_weights=false", "target.output_bias=false"]


def batches(start_id: int, count: int):
    """``count`` times one batch: the model learns it."""
    for _ in range(count):
        generator = torch.Generator().manual_seed(3)
        src = torch.randint(5, 30, (4, 9), generator=generator)
        src[0, 6:] = 0
        tgt = torch.randint(5, 30, (4, 7), generator=generator)
        tgt[1, 5:] = 0
        tgt_in = torch.cat([torch.full((4, 1), start_id), tgt[:, :-1]], dim=1)
        yield {"src": src, "seg": (src != 0).long(), "tgt_in": tgt_in, "tgt_out": tgt}


def train(model, optimizer, start_id: int, steps, skip: int = 0):
    model.train()
    for batch in list(batches(start_id, skip + steps))[skip:]:
        torch.manual_seed(len(batch))  # the same dropout masks in a straight and a resumed run
        output = model(batch)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    return output


@pytest.mark.parametrize("extra", [[], T5_LIKE], ids=["bart-like", "t5-like"])
def test_the_composed_model_trains_and_its_checkpoint_resumes_bit_identically(tmp_path, extra):
    vocab_path = write_vocab(tmp_path / "vocab.txt")
    cfg = compose_config(["stage=pretrain", "decoder=transformer", "target=seq2seq", "size=smoke",
                          f"tokenizer.vocab_path={vocab_path}", "target.label_smoothing=0.1", *extra])
    tokenizer = build_tokenizer(cfg.tokenizer)
    cfg.decoder.start_id = tokenizer.vocab.cls_id
    vocab = len(tokenizer.vocab)

    def build():
        torch.manual_seed(0)
        model = build_model(cfg.embedding, cfg.encoder, cfg.target, vocab, decoder_cfg=cfg.decoder)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    straight, optimizer = build()
    first = train(straight, optimizer, cfg.decoder.start_id, 1)
    last = train(straight, optimizer, cfg.decoder.start_id, 3, skip=1)
    assert last.loss < first.loss
    assert set(last.stats) == {"seq2seq_loss", "seq2seq_acc"}

    model, optimizer = build()
    train(model, optimizer, cfg.decoder.start_id, 2)
    config = OmegaConf.to_container(cfg, resolve=True)
    save_checkpoint(tmp_path / "step_2.pt", model_state=model.state_dict(), config=config, tokenizer=tokenizer,
                    trainer={"optimizer": optimizer.state_dict()})
    payload = load_checkpoint(tmp_path / "step_2.pt")
    stored = payload["config"]
    assert stored["decoder"]["type"] == "transformer" and stored["decoder"]["start_id"] == tokenizer.vocab.cls_id
    resumed = build_model(stored["embedding"], stored["encoder"], stored["target"], vocab,
                          decoder_cfg=stored["decoder"])
    resumed.load_state_dict(payload["model"])
    optimizer = torch.optim.AdamW(resumed.parameters(), lr=1e-3)
    optimizer.load_state_dict(payload["trainer"]["optimizer"])
    train(resumed, optimizer, cfg.decoder.start_id, 2, skip=2)
    for key, tensor in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], tensor), key


def test_without_a_decoder_nothing_changes():
    cfg = compose_config(["stage=pretrain", "size=smoke"])
    assert cfg.decoder is None
    assert type(build_model(cfg.embedding, cfg.encoder, cfg.target, 30, decoder_cfg=cfg.decoder)).__name__ == \
        "PretrainModel"


@pytest.mark.parametrize("overrides, fragment", [
    (["decoder=transformer", "target=mlm"], "target=mlm reads the encoder's alone"),
    (["target=seq2seq"], "add decoder=transformer"),
    (["decoder=transformer", "target=seq2seq", "decoder.hidden_size=16"], "decoder.hidden_size=16 differs"),
    (["decoder=transformer", "target=seq2seq", "embedding=word", "encoder.relative_position_buckets=8"],
     "set decoder.relative_position_buckets"),
    (["decoder=transformer", "target=seq2seq", "decoder.feedforward=bogus"], "unknown decoder.feedforward 'bogus'"),
    (["decoder=transformer", "target=seq2seq", "encoder.layernorm_positioning=middle"],
     "unknown encoder.layernorm_positioning 'middle'"),
])
def test_refused_combinations_say_why(overrides, fragment):
    cfg = compose_config(["stage=pretrain", "size=smoke", *overrides])
    with pytest.raises(UerError, match=fragment):
        check_model(cfg.embedding, cfg.encoder, cfg.target, cfg.decoder)


def test_a_decoder_with_an_encoder_only_target_is_one_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "model"
    result = run_main(["stage=pretrain", "decoder=transformer", "target=mlm", "size=smoke",
                       f"output_model_path={out}"], tmp_path / "run")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "target=mlm reads the encoder's alone" in errors[0], result.stderr
    assert not out.exists()


# --- tool=convert ----------------------------------------------------------------------------------

# T5's roles as published (no [CLS], [SEP] or [MASK]); BART's five.
TOKENS = {"t5-v1.0": (["<pad>", "</s>", "<unk>"], {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}),
          "bart": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"],  # BART's order: <pad> = 1, swapped with 0 in uer
                   {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
                    "mask_token": "<mask>"})}


def saved_directory(directory, name: str):
    """A random ``name`` model saved with save_pretrained beside a whole-word tokenizer.json; the model."""
    cls, config = CASES[name]
    model = randomized(cls(config(**({"pad_token_id": 1} if name == "bart" else {}))))
    model.save_pretrained(directory)
    specials, roles = TOKENS[name]
    tokens = specials + [f"w{i}" for i in range(V - len(specials))]
    tokenizer = Tokenizer(tokenizer_models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "special_tokens_map.json").write_text(json.dumps(roles), encoding="utf-8")
    return model


def convert(input_path, input_format, output_path, output_format):
    return run_stage(compose_config(["stage=tool", "tool=convert", "hardware.num_threads=1",
                                     f"tool.input_path={input_path}", f"tool.input_format={input_format}",
                                     f"tool.output_path={output_path}", f"tool.output_format={output_format}"]))


@pytest.mark.parametrize("name", list(TOKENS))
def test_convert_reads_and_writes_the_family_exactly(tmp_path, name):
    theirs = saved_directory(tmp_path / "hf", name)
    convert(tmp_path / "hf", "hf", tmp_path / "model.pt", "uer_ckpt")
    payload = load_checkpoint(tmp_path / "model.pt")
    config = payload["config"]
    model = build_model(config["embedding"], config["encoder"], config["target"], V,
                        decoder_cfg=config["decoder"]).eval()
    model.load_state_dict({key: tensor for key, tensor in payload["model"].items() if "reserved_rows" not in key})
    pad = theirs.config.pad_token_id
    src, seg, tgt = source_and_target(theirs.config.decoder_start_token_id)
    src_file = src.masked_fill(seg == 0, pad)
    with torch.no_grad():
        expected = theirs(input_ids=src_file, attention_mask=seg, decoder_input_ids=tgt).logits
        ours = model.logits(*(torch.tensor([swap_pad(row, pad) for row in ids.tolist()]) for ids in (src_file,)),
                            seg, torch.tensor([swap_pad(row, pad) for row in tgt.tolist()]))
    order = torch.tensor(swap_pad(list(range(V)), pad))  # our vocabulary's ids in the file's order
    torch.testing.assert_close(ours[..., order], expected, atol=1e-5, rtol=1e-5)

    convert(tmp_path / "model.pt", "uer_ckpt", tmp_path / "back", "hf")
    again, info = type(theirs).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    original = theirs.state_dict()
    for key, tensor in again.state_dict().items():
        assert torch.equal(tensor, original[key]), key


def test_an_encoder_decoder_model_has_no_original_uer_form(tmp_path, capsys):
    saved_directory(tmp_path / "hf", "t5-v1.0")
    cfg = compose_config(["stage=tool", "tool=convert", f"tool.input_path={tmp_path / 'hf'}", "tool.input_format=hf",
                          f"tool.output_path={tmp_path / 'model.bin'}", "tool.output_format=uer"])
    expect_user_error(capsys, cfg, "encoder-decoder model", "tool.output_format=uer_ckpt or hf")
    assert not (tmp_path / "model.bin").exists()


@pytest.mark.parametrize("overrides, fragment", [
    (["embedding=word_pos", "decoder.shared_embedding=false"], "this model's decoder has its own"),
    ([], "BART embeds with embedding=word_pos with a LayerNorm; this model's is embedding=word_pos_seg"),
])
def test_a_model_no_family_holds_is_one_line_and_nothing_is_written(tmp_path, capsys, overrides, fragment):
    vocab_path = write_vocab(tmp_path / "vocab.txt")
    cfg = compose_config(["stage=pretrain", "decoder=transformer", "target=seq2seq", "size=smoke",
                          f"tokenizer.vocab_path={vocab_path}", "decoder.start_id=2", *overrides])
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(build_tokenizer(cfg.tokenizer).vocab),
                        decoder_cfg=cfg.decoder)
    save_model_checkpoint(tmp_path / "model.pt", model, cfg)
    tool = compose_config(["stage=tool", "tool=convert", f"tool.input_path={tmp_path / 'model.pt'}",
                           "tool.input_format=uer_ckpt", f"tool.output_path={tmp_path / 'hf'}",
                           "tool.output_format=hf", "tool.hf_model_type=bart"])
    expect_user_error(capsys, tool, fragment)
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("beams", [1, 3], ids=["greedy", "beam search"])
def test_generation_over_the_converted_model_chooses_transformers_tokens(beams):
    """uer.models.generation drives the model through start_generation/step/reorder (the protocol)."""
    theirs = tiny_bart(end_bias=2.0)
    uer, nodes = seq2seq_hf_to_uer(SEQ2SEQ_FAMILIES["bart"], theirs.state_dict(), theirs.config.to_dict(), "bart",
                                   "config.json")
    model = build_model(nodes["embedding"], nodes["encoder"], nodes["target"], theirs.config.vocab_size,
                        decoder_cfg=nodes["decoder"])
    ours = from_uer_state_dict(uer)
    model.load_state_dict({key: ours[key] for key in model.state_dict()})
    src, seg = ragged_batch([7, 3, 5, 6], theirs.config.vocab_size)
    config = GenerationConfig(max_new_tokens=8, num_beams=beams)
    with torch.no_grad():
        found = generate(model.eval(), src, seg, config, eos_id=theirs.config.eos_token_id)
    assert found == hf_generate(theirs, src, config, theirs.config.eos_token_id)
