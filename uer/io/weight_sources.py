"""Where weights a run starts from are published, for the message of a missing ``pretrained_model_path``.

Nothing is downloaded for a missing local path: the message says where such weights are
published -- the original UER-py toolkit's model zoo (``.bin`` files, read as they are), the
Hugging Face hub (a model directory or hub id is read as it is, :mod:`uer.io.hf_hub`) and
Google's TensorFlow checkpoints (the ``tool=convert`` command) -- and a checkpoint an earlier
preset writes names that preset.
"""

from __future__ import annotations

from pathlib import Path

from uer.paths import CONF

MODEL_ZOO = "https://github.com/dbiir/UER-py#modelzoo"
HF_HUB = "https://huggingface.co/uer; Google's Chinese BERT: https://huggingface.co/bert-base-chinese"
GOOGLE = "https://github.com/google-research/bert; ALBERT: https://github.com/google-research/albert"


def missing_weights(path) -> str:
    """One line: ``path`` does not exist, and how to get weights there."""
    path = Path(path)
    preset = _preset_writing(path)
    if preset is not None:
        return (f"pretrained_model_path={path} not found; it is written by an earlier run: python main.py "
                f"experiment={preset} output_model_path={path.parent} (see conf/experiment/{preset}.yaml), or pass "
                "pretrained_model_path=PATH (an original .bin or one of our .pt), or null for random weights")
    converted = path.with_suffix(".pt")
    convert = (f"python main.py tool=convert tool.input_format={{fmt}} tool.input_path={{source}} "
               f"tool.output_format=uer_ckpt tool.output_path={converted} tokenizer.vocab_path={{vocab}}")
    return (f"pretrained_model_path={path} not found (nothing is downloaded). Such weights are published as the "
            f"original toolkit's .bin in its model zoo ({MODEL_ZOO}; save the file as {path}, it is read as it is); "
            f"as Hugging Face models ({HF_HUB}): pass the hub id (pretrained_model_path=uer/chinese_roberta_L-4_H-512) "
            "or a downloaded model directory (config.json, weights, tokenizer files), read as they are, or convert: "
            + convert.format(fmt="hf", source="DIR", vocab="DIR/vocab.txt")
            + f"; as Google's TensorFlow checkpoints ({GOOGLE}): "
            + convert.format(fmt="tf", source="DIR/bert_model.ckpt", vocab="DIR/vocab.txt")
            + f"; then pass pretrained_model_path={converted}, or pretrained_model_path=null for random weights")


def _preset_writing(path: Path):
    """The preset whose documented run writes ``path`` (``outputs/models/NAME/step_N.pt``), if any."""
    if path.suffix != ".pt" or path.parent.parent.name != "models":
        return None
    name = path.parent.name
    return name if (CONF / "experiment" / f"{name}.yaml").is_file() else None
