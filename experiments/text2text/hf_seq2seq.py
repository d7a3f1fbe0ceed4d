"""Reproduction (not CI): the peer side of issue 22's text-to-text reproductions, in transformers' ``Seq2SeqTrainer``.

    python experiments/text2text/hf_seq2seq.py                  # entities: seeds 1 2 3, one thread, one after another
    python experiments/text2text/hf_seq2seq.py --task types     # types (datasets/msra_entity_types_text)
    python experiments/text2text/hf_seq2seq.py --seeds 1        # one seed (seeds run at once share --out)
    python experiments/text2text/hf_seq2seq.py --quick          # seconds: 64 rows, 1 epoch (checks the script only)

The same model, data and recipe as the data set's preset (``common.DATASETS``: ``experiment=msra_entities_text2text``
for ``--task entities``, ``experiment=msra_entity_types_text2text`` for ``--task types``; their ``recipe`` and
``common.MODEL`` are the presets' values):

* data: the data set's ``train.tsv``, the best epoch by its ``best_metric`` on ``dev.tsv``, scores on
  ``test.tsv`` (``datasets/msra_entities``: MSRA-NER as entity extraction; ``datasets/msra_entity_types_text``:
  the entity types of the same sentences; see their READMEs);
* ids: the project's BERT tokenizer over ``models/google_zh_vocab.txt`` (the ids uer sees): the
  encoder reads ``[CLS] source [SEP]`` (at most ``source_length`` ids), the decoder starts with
  ``[CLS]`` and learns ``target [SEP]`` (at most ``target_length`` ids: every target fits), padding id 0;
* model: ``BartForConditionalGeneration`` from random weights (normal, std 0.02): d_model 128, 3+3
  post-LN layers, 4 heads, feed-forward 512, GELU, learned positions with a LayerNorm on the
  embeddings, the output tied to the shared word embedding with a bias, dropout 0.1 (also on the
  attention probabilities, as uer's);
* recipe: AdamW (eps 1e-6, weight decay 0.01, not on biases and LayerNorms), linear schedule with 10%
  warm-up, gradient clipping at 1.0, the learning rate, batch size and epochs of the data set's ``recipe``;
* generation: greedy (and beam 4), at most ``max_new_tokens`` new tokens; generations are turned
  back into text by the project's detokenizer (WordPiece pieces joined, no spaces between Chinese
  characters) and scored against the TSV's targets by ``common.scores``: the project's
  ``uer.tasks.text_metrics.text_scores(..., tokenize="zh")``, the code that scores ``task=text2text``, and for
  ``types`` the set-level ``common.type_scores`` that uer's side uses too.

Each seed's scores (dev of the best epoch, test greedy and beam 4, wall time) go to
``--out`` (default the data set's ``results_hf.json`` / ``results_types_hf.json``), merged with the seeds
already there; at the end the mean and sample standard deviation per metric are printed and stored.
``experiments/text2text/uer_text2text.py`` writes the same shape for uer.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import BEAMS, DATASETS, MODEL, ROOT, SEEDS, TASK_ARGUMENT, scores, summary_of
from hf_peer import peer_arguments, project_tokenizer, run_seeds, train_keeping_best, training_arguments, without_hf_datasets


def read_tsv(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["source", "target"]:
            raise SystemExit(f"{path}: header {header}, expected source, target")
        rows = [tuple(line.rstrip("\n").split("\t")) for line in f]
    return rows[:limit] if limit else rows


class Encoded:
    """Rows as ids: ``input_ids`` ``[CLS] source [SEP]``, ``labels`` ``target [SEP]`` (source cut to its length)."""

    def __init__(self, rows, tokenizer, source_length: int, target_length: int):
        cls, sep = tokenizer.vocab.token_to_id("[CLS]"), tokenizer.vocab.token_to_id("[SEP]")
        self.items = []
        for source, target in rows:
            src = [cls, *tokenizer.encode(source)[:source_length - 2], sep]
            tgt = [*tokenizer.encode(target), sep]
            if len(tgt) > target_length:  # uer refuses such a row (a bad row): no target here needs cutting
                raise SystemExit(f"a target of {len(tgt) - 1} tokens: more than target_length={target_length} allows")
            self.items.append({"input_ids": src, "labels": tgt})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def collate(batch: list[dict]) -> dict:
    """Pads ``input_ids`` with 0 (mask 0 there) and ``labels`` with -100 (no loss there)."""
    import torch

    width_src = max(len(item["input_ids"]) for item in batch)
    width_tgt = max(len(item["labels"]) for item in batch)
    ids = torch.zeros(len(batch), width_src, dtype=torch.long)
    labels = torch.full((len(batch), width_tgt), -100, dtype=torch.long)
    for row, item in enumerate(batch):
        ids[row, :len(item["input_ids"])] = torch.tensor(item["input_ids"])
        labels[row, :len(item["labels"])] = torch.tensor(item["labels"])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": labels}


def bart_config(vocab_size: int, cls_id: int, sep_id: int):
    from transformers import BartConfig

    return BartConfig(
        vocab_size=vocab_size, d_model=MODEL["hidden_size"], encoder_layers=MODEL["layers_num"],
        decoder_layers=MODEL["layers_num"], encoder_attention_heads=MODEL["heads_num"],
        decoder_attention_heads=MODEL["heads_num"], encoder_ffn_dim=MODEL["feedforward_size"],
        decoder_ffn_dim=MODEL["feedforward_size"], activation_function="gelu",
        max_position_embeddings=MODEL["max_seq_length"], dropout=MODEL["dropout"],
        attention_dropout=MODEL["dropout"], activation_dropout=0.0, encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        init_std=0.02, scale_embedding=False, tie_word_embeddings=True, pad_token_id=0, bos_token_id=cls_id,
        eos_token_id=sep_id, decoder_start_token_id=cls_id, forced_bos_token_id=None, forced_eos_token_id=None)


def texts(ids_rows, tokenizer, stop_ids: dict[str, int]) -> list[str]:
    """Generated ids back to text: the tokens up to the first [SEP], without [CLS]/[PAD], detokenized."""
    from uer.tokenizers.detokenize import detokenize

    out = []
    for ids in ids_rows:
        kept = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == stop_ids["sep"]:
                break
            if token_id not in (stop_ids["cls"], stop_ids["pad"]) and token_id >= 0:
                kept.append(token_id)
        out.append(detokenize("", tokenizer.convert_ids_to_tokens(kept), "bert"))
    return out


def run_seed(seed: int, args, tokenizer, dataset) -> dict:
    import torch
    import transformers.trainer
    import transformers.trainer_seq2seq
    from transformers import (BartForConditionalGeneration, GenerationConfig, Seq2SeqTrainer,
                              Seq2SeqTrainingArguments, set_seed)

    without_hf_datasets(transformers.trainer, transformers.trainer_seq2seq)

    torch.set_num_threads(args.threads)
    limit = 64 if args.quick else None
    train_rows = read_tsv(dataset.data / "train.tsv", limit)
    dev_rows, test_rows = read_tsv(dataset.data / "dev.tsv", limit), read_tsv(dataset.data / "test.tsv", limit)
    recipe = dict(dataset.recipe, epochs_num=1 if args.quick else args.epochs)
    lengths = (recipe["source_length"], recipe["target_length"])
    train, dev, test = (Encoded(rows, tokenizer, *lengths) for rows in (train_rows, dev_rows, test_rows))
    vocab = tokenizer.vocab
    special = {"cls": vocab.token_to_id("[CLS]"), "sep": vocab.token_to_id("[SEP]"), "pad": 0}

    set_seed(seed)
    model = BartForConditionalGeneration(bart_config(len(vocab), special["cls"], special["sep"]))
    greedy = GenerationConfig(max_new_tokens=recipe["max_new_tokens"], num_beams=1, do_sample=False,
                              decoder_start_token_id=special["cls"], bos_token_id=special["cls"],
                              eos_token_id=special["sep"], pad_token_id=0)
    model.generation_config = greedy

    def metrics(prediction) -> dict:
        references = [target for _, target in dev_rows]
        return scores(texts(prediction.predictions, tokenizer, special), references, dataset)

    with tempfile.TemporaryDirectory(prefix="hf_seq2seq_") as work:
        best_metric, metrics_kept = dataset.best_metric, dataset.metrics()
        training = training_arguments(Seq2SeqTrainingArguments, work, seed, recipe, len(dev), best_metric,
                                      predict_with_generate=True, generation_config=greedy)
        trainer = Seq2SeqTrainer(model=model, args=training, train_dataset=train, eval_dataset=dev,
                                 data_collator=collate, compute_metrics=metrics)
        train_seconds, best, history = train_keeping_best(trainer, best_metric)
        model = trainer.model.eval()
        references = [target for _, target in test_rows]
        result = {"seed": seed, "best_epoch": round(best["epoch"]), "train_seconds": round(train_seconds, 1),
                  "dev": {name: best[f"eval_{name}"] for name in metrics_kept},
                  "dev_by_epoch": [{"epoch": round(entry["epoch"]), best_metric: entry[f"eval_{best_metric}"],
                                    "exact_match": entry["eval_exact_match"]} for entry in history]}
        for name, beams in (("test_greedy", 1), (f"test_beam{BEAMS}", BEAMS)):
            if beams > 1 and args.no_beam:
                continue
            start = time.perf_counter()
            generated = generate(model, test, collate, beams, greedy)
            outputs = texts(generated, tokenizer, special)
            result[name] = scores(outputs, references, dataset)
            result[name]["seconds"] = round(time.perf_counter() - start, 1)
            result[f"{name}_examples"] = [{"source": s, "target": t, "generated": g}
                                          for (s, t), g in zip(test_rows[:5], outputs[:5])]
    return result


def generate(model, data, collate_fn, beams: int, base, batch_size: int = 64) -> list[list[int]]:
    import torch

    config = base.__class__.from_dict({**base.to_dict(), "num_beams": beams, "early_stopping": beams > 1})
    rows: list[list[int]] = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = collate_fn([data[i] for i in range(start, min(start + batch_size, len(data)))])
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 generation_config=config)
            rows.extend(out[:, 1:].tolist())  # without the decoder start
    return rows


def main() -> None:
    args = peer_arguments(__doc__, SEEDS, None, None, TASK_ARGUMENT,
                          ("--no-beam", {"action": "store_true", "help": "greedy only on test"}))
    dataset = DATASETS[args.task]
    args.epochs, args.out = args.epochs or dataset.recipe["epochs_num"], args.out or dataset.results("hf")
    import transformers  # lazy: the script's --help needs no transformers

    tokenizer = project_tokenizer()
    header = {"toolkit": "transformers", "transformers": transformers.__version__,
              "command": "python experiments/text2text/hf_seq2seq.py " + " ".join(sys.argv[1:]),
              "data": str(dataset.data.relative_to(ROOT)), "model": MODEL,
              "recipe": dict(dataset.recipe, epochs_num=args.epochs), "best_metric": dataset.best_metric,
              "threads": args.threads}
    run_seeds(args, lambda seed: run_seed(seed, args, tokenizer, dataset), header, summary_of(dataset),
              ("seed", "best_epoch", "train_seconds", "dev", "test_greedy"))


if __name__ == "__main__":
    main()
