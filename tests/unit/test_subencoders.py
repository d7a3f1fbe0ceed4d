"""embedding.subencoder: a token's vector composed from its characters (uer/models/subencoders.py).

Each sub-encoder is checked against its computation written out here over one word at a time,
so a word's vector must not depend on the other words of its batch (the original's did)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint, sealed
from uer.models import build_backbone
from uer.models.subencoders import character_table
from uer.app import run_stage
from uer.tools.model_loading import load_model
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, run_main

DATA = ROOT / "datasets" / "test_data" / "book_review"
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "书", "好书", "##书", "读书人", "abc", "##"]
EMB = 8


def test_character_table_spells_each_token_with_ids_of_the_vocabulary_s_characters():
    ids, lengths, characters = character_table(TOKENS)
    symbols = {"[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "书": 5, "好": 6, "读": 7, "人": 8, "a": 9, "b": 10,
               "c": 11, "#": 12}
    spelled = [[], ["[UNK]"], ["[CLS]"], ["[SEP]"], ["[MASK]"], ["书"], ["好", "书"], ["书"], ["读", "书", "人"],
               ["a", "b", "c"], ["#", "#"]]
    assert characters == len(symbols) + 1 and ids.shape == (len(TOKENS), 3)
    for row, expected in enumerate(spelled):
        assert lengths[row] == len(expected)
        assert ids[row].tolist() == [symbols[s] for s in expected] + [0] * (3 - len(expected))


def embedding_config(subencoder: str, *extra: str):
    cfg = compose_config(["embedding=word", "encoder=lstm", *SMALL, f"model.emb_size={EMB}", "model.dropout=0.0",
                          f"embedding.subencoder={subencoder}", *extra])
    return cfg.embedding, cfg.encoder


def by_hand(subencoder, word: int) -> torch.Tensor:
    """The word's vector computed from its characters alone, as the sub-encoder's docstring says."""
    ids, lengths, _ = character_table(TOKENS)
    chars = subencoder.embedding_layer(ids[word, :lengths[word]])  # (n, emb)
    if lengths[word] == 0:
        return torch.zeros(EMB)
    if hasattr(subencoder, "cnn"):
        k = subencoder.cnn.kernel_size[0]
        padded = torch.cat([torch.zeros(k - 1, EMB), chars])
        weight, bias = subencoder.cnn.weight, subencoder.cnn.bias  # (out, in, k)
        outputs = [torch.relu(torch.einsum("oik,ki->o", weight, padded[i:i + k]) + bias) for i in range(len(chars))]
        return torch.stack(outputs).max(0).values
    if hasattr(subencoder, "rnn"):
        output, _ = subencoder.rnn(chars.unsqueeze(0))
        return output[0].mean(0)
    return chars.mean(0)


@pytest.mark.parametrize("name", ["avg", "lstm", "gru", "cnn"])
def test_each_word_s_vector_is_computed_from_its_own_characters(name):
    torch.manual_seed(0)
    embedding_cfg, encoder_cfg = embedding_config(name, "embedding.kernel_size=2")
    embedding = build_backbone(embedding_cfg, encoder_cfg, len(TOKENS), tokens=TOKENS).embedding.eval()
    subencoder = embedding.subencoder
    # One batch holds short and long words; the other the short word alone.
    batch = torch.tensor([[5, 8, 6, 0], [9, 7, 2, 10]])
    with torch.no_grad():
        vectors = subencoder(batch)
        alone = subencoder(torch.tensor([[5]]))
        for row, words in enumerate(batch.tolist()):
            for column, word in enumerate(words):
                torch.testing.assert_close(vectors[row, column], by_hand(subencoder, word), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(alone[0, 0], vectors[0, 0], atol=1e-6, rtol=1e-5)
        # The embedding's output is the word embedding's (LayerNorm, dropout) plus the sub-encoder's vector.
        embedding.subencoder = None
        without = embedding(batch, torch.zeros_like(batch))
        embedding.subencoder = subencoder
        torch.testing.assert_close(embedding(batch, torch.zeros_like(batch)), without + vectors)


def test_a_model_with_a_subencoder_needs_the_vocabulary_s_tokens():
    embedding_cfg, encoder_cfg = embedding_config("avg")
    with pytest.raises(UerError, match="embedding.subencoder=avg reads each token's characters"):
        build_backbone(embedding_cfg, encoder_cfg, len(TOKENS))
    with pytest.raises(UerError, match="the vocabulary has 11 tokens but the model 12 word embedding rows"):
        build_backbone(embedding_cfg, encoder_cfg, 12, tokens=TOKENS)


def test_an_unknown_subencoder_stops_before_any_work(tmp_path):
    proc = run_main(["task=classifier", "embedding=word", "encoder=lstm", "embedding.subencoder=bilstm",
                     f"finetune.train_path={DATA / 'train.tsv'}", f"finetune.dev_path={DATA / 'dev.tsv'}",
                     f"output_model_path={tmp_path / 'model'}"], tmp_path / "run")
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: embedding.subencoder=bilstm is not a sub-encoder; choose one of: none, avg, lstm, gru, cnn"]
    assert "Traceback" not in proc.stderr and not (tmp_path / "model").exists()


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("subencoder")
    run_stage(compose_config(["task=classifier", "embedding=word", "encoder=lstm", *SMALL, "model.dropout=0.0",
                              "embedding.subencoder=cnn", f"finetune.train_path={DATA / 'train.tsv'}",
                              f"finetune.dev_path={DATA / 'dev.tsv'}", "finetune.max_steps=3",
                              "finetune.batch_size=16", "finetune.seq_length=32", "hardware.num_threads=1",
                              f"output_model_path={out}"]))
    return out / "best.pt"


def test_the_checkpoint_keeps_the_subencoder_and_rebuilds_its_characters_from_its_vocabulary(fine_tuned, tmp_path):
    payload = load_checkpoint(fine_tuned)
    assert payload["config"]["embedding"]["subencoder"] == "cnn"
    weights = [key for key in payload["model"] if ".subencoder." in key]
    assert "backbone.embedding.subencoder.cnn.weight" in weights
    assert not [key for key in weights if "character" in key]  # derived from the vocabulary, not stored

    cfg = compose_config(["stage=tool", "tool=extract_feature", f"tool.input_path={fine_tuned}"])
    loaded = load_model(cfg)
    ids, lengths, _ = character_table(payload["tokenizer"]["tokens"])
    subencoder = loaded.backbone.embedding.subencoder
    assert torch.equal(subencoder.character_ids, ids) and torch.equal(subencoder.character_counts, lengths)
    torch.testing.assert_close(subencoder.cnn.weight, payload["model"]["backbone.embedding.subencoder.cnn.weight"])

    # Predictions from the checkpoint alone use the sub-encoder: without its weights they change.
    predictions = []
    for name, path in (("with", fine_tuned), ("without", tmp_path / "zeroed.pt")):
        if name == "without":
            payload["model"] = {key: (torch.zeros_like(value) if ".subencoder." in key else value)
                                for key, value in payload["model"].items()}
            torch.save(sealed(payload), path)
        out = tmp_path / f"{name}.tsv"
        run_stage(compose_config(["stage=infer", f"infer.load_model_path={path}", f"infer.prediction_path={out}",
                                  f"infer.test_path={DATA / 'test_nolabel.tsv'}", "infer.output_logits=true"]))
        predictions.append(out.read_text(encoding="utf-8"))
    assert predictions[0] != predictions[1]


@pytest.mark.parametrize("output_format", ["hf", "uer"])
def test_converting_a_model_with_a_subencoder_to_a_layout_without_one_is_refused(fine_tuned, tmp_path, capsys,
                                                                                 output_format):
    out = tmp_path / "converted"
    cfg = compose_config(["stage=tool", "tool=convert", f"tool.input_path={fine_tuned}", "tool.input_format=uer_ckpt",
                          f"tool.output_format={output_format}", f"tool.output_path={out}"])
    line = expect_user_error(capsys, cfg, f"{fine_tuned} composes words from characters (embedding.subencoder=cnn)",
                             "tool.output_format=uer_ckpt")
    assert "has no place for" in line and not out.exists()


def test_moving_a_model_to_another_vocabulary_keeps_each_kept_token_s_character_vector(fine_tuned, tmp_path):
    old_tokens = load_checkpoint(fine_tuned)["tokenizer"]["tokens"]
    # Drop a block of tokens (and with them characters), add words written with new characters.
    new_tokens = old_tokens[:3000] + old_tokens[3500:] + ["𠀀𠀁", "书𠀂"]
    (tmp_path / "new_vocab.txt").write_text("\n".join(new_tokens) + "\n", encoding="utf-8")
    adapted = tmp_path / "adapted.pt"
    run_stage(compose_config(["stage=tool", "tool=dynamic_vocab_adapter", f"tool.input_path={fine_tuned}",
                              f"tool.new_vocab_path={tmp_path / 'new_vocab.txt'}", f"tool.output_path={adapted}"]))

    def vectors(path, tokens):
        loaded = load_model(compose_config(["stage=tool", "tool=extract_feature", f"tool.input_path={path}"]))
        ids = {token: index for index, token in enumerate(loaded.tokenizer.vocab.tokens)}
        with torch.no_grad():
            return loaded.backbone.embedding.subencoder(torch.tensor([[ids[token] for token in tokens]]))[0]

    kept = old_tokens[1:3000:7] + old_tokens[3500::7]
    torch.testing.assert_close(vectors(adapted, kept), vectors(fine_tuned, kept))
    assert vectors(adapted, ["书𠀂"]).abs().sum() > 0


def test_tools_that_read_the_word_embedding_alone_say_so(fine_tuned, tmp_path, caplog):
    words = tmp_path / "words.txt"
    words.write_text("书\n", encoding="utf-8")
    for tool, extra in (("extract_embedding", [f"tool.output_path={tmp_path / 'embedding.npy'}"]),
                        ("topn_words_indep", [f"tool.test_path={words}", f"tool.output_path={tmp_path / 'n.json'}"])):
        caplog.clear()
        run_stage(compose_config(["stage=tool", f"tool={tool}", f"tool.input_path={fine_tuned}", *extra]))
        assert any("composed from its characters" in record.getMessage() and record.levelname == "WARNING"
                   for record in caplog.records), tool
