"""The configuration reference page, generated from the schemas and ``conf/``.

    python -m uer.config.reference > docs/reference.md

Every key of the composed config (type, default, what it means: the comments next to the
fields in :mod:`uer.config.schema` and :mod:`uer.config.tool_schema`), and every option of
every config group with what it sets.  ``tests/test_reference.py`` compares the committed
page with this output, so the page cannot go stale: change a schema or a group file, then
regenerate.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from uer.config import schema, tool_schema

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
COMMAND = "python -m uer.config.reference > docs/reference.md"

# Sections of the config: (key, schema class); the order of the page.
SECTIONS = [
    ("model", schema.ModelSizeConfig),
    ("tokenizer", schema.TokenizerConfig),
    ("embedding", schema.EmbeddingConfig),
    ("encoder", schema.EncoderConfig),
    ("target", schema.TargetConfig),
    ("hardware", schema.HardwareConfig),
    ("preprocess", schema.PreprocessConfig),
    ("pretrain", schema.PretrainConfig),
    ("task", schema.TaskConfig),
    ("finetune", schema.FinetuneConfig),
    ("infer", schema.InferConfig),
    ("tool", tool_schema.ToolConfig),
]
# What a key means where its schema field carries no comment (a comment in the schema wins).
MEANINGS = {
    "stage": "what to run: preprocess, pretrain, finetune, infer or tool",
    "seed": "seed of every random draw (weights, masks, batch order, dropout)",
    "output_model_path": "where checkpoints go (pretrain: step_N.pt; finetune: best.pt); "
                         "null = model/ in the run directory",
    "pretrained_model_path": "weights to start from: one of our .pt checkpoints or an original UER .bin; "
                             "null = random initialisation",
    "resume": "pretrain: continue from the newest step_N.pt in output_model_path",
    "model.emb_size": "embedding width (smaller than hidden_size: ALBERT's factorized embedding)",
    "model.hidden_size": "encoder width",
    "model.feedforward_size": "transformer feed-forward width",
    "model.heads_num": "attention heads",
    "model.layers_num": "encoder layers",
    "model.dropout": "dropout probability everywhere",
    "model.hidden_act": "feed-forward activation: gelu | relu",
    "model.max_seq_length": "positions of the position embedding: the longest input",
    "model.parameter_sharing": "one layer shared across the stack (ALBERT)",
    "tokenizer.vocab_path": "vocabulary file, one token a line ([PAD] first)",
    "tokenizer.spm_model_path": "a SentencePiece model; replaces vocab_path",
    "tokenizer.do_lower_case": "lower-case (and strip accents from) the text first",
    "embedding.layernorm_eps": "LayerNorm epsilon",
    "encoder.type": "transformer | attn | synt | lstm | gru | bilstm | bigru | cnn | gatedcnn | rcnn | crnn "
                    "(pick with encoder=)",
    "encoder.layernorm_eps": "LayerNorm epsilon",
    "target.tie_weights": "share the output projection with the word embedding",
    "hardware.nnodes": "machines of a multi-node run",
    "preprocess.corpus_path": "the corpus: one document per line (mlm, lm, bilm) or documents separated by "
                              "blank lines, one sentence per line (bert, albert)",
    "preprocess.dataset_path": "the dataset folder to write (memory-mapped arrays and meta.json)",
    "preprocess.seq_length": "tokens per instance",
    "preprocess.dup_factor": "copies of the corpus with different static masks",
    "preprocess.short_seq_prob": "probability of a shorter instance (bert, albert)",
    "preprocess.full_sentences": "let an instance run across documents (RoBERTa)",
    "preprocess.docs_buffer_size": "documents shuffled and packed together",
    "preprocess.processes_num": "worker processes (the dataset is the same for any number)",
    "preprocess.dynamic_masking": "draw masks at batch time, anew every epoch (RoBERTa)",
    "preprocess.span_masking": "mask whole spans (SpanBERT)",
    "preprocess.span_geo_prob": "span lengths are geometric with this p",
    "preprocess.span_max_length": "longest masked span",
    "pretrain.dataset_path": "a dataset written by stage=preprocess",
    "pretrain.total_steps": "optimizer steps of the whole schedule",
    "pretrain.save_checkpoint_steps": "write step_N.pt every this many steps (and at the end)",
    "pretrain.report_steps": "log, metrics.jsonl and TensorBoard every this many steps",
    "pretrain.accumulation_steps": "micro-batches per optimizer step",
    "pretrain.batch_size": "instances per micro-batch (per worker in a multi-process run)",
    "pretrain.learning_rate": "peak learning rate (AdamW)",
    "pretrain.weight_decay": "AdamW weight decay (not on biases and LayerNorm)",
    "pretrain.adam_epsilon": "AdamW epsilon",
    "pretrain.max_grad_norm": "clip the gradient norm to this; 0 = no clipping",
    "finetune.train_path": "labelled training file (format: see the task)",
    "finetune.dev_path": "labelled file scored after every epoch; the best epoch is kept",
    "finetune.epochs_num": "passes over train_path",
    "finetune.batch_size": "examples per micro-batch",
    "finetune.learning_rate": "peak learning rate (AdamW)",
    "finetune.weight_decay": "AdamW weight decay (not on biases and LayerNorm)",
    "finetune.adam_epsilon": "AdamW epsilon",
    "finetune.max_grad_norm": "clip the gradient norm to this; 0 = no clipping",
    "finetune.accumulation_steps": "micro-batches per optimizer step",
    "finetune.seq_length": "longest input in tokens (longer ones are cut)",
    "finetune.report_steps": "log, metrics.jsonl and TensorBoard every this many steps",
    "infer.test_path": "file to predict (labels, if any, are ignored)",
    "infer.batch_size": "examples per batch",
    "infer.output_logits": "add a logits column",
    "infer.output_prob": "add a probabilities column",
    "tool.input_path": "the tool's input file (a model, a vocabulary, text)",
    "tool.input_paths": "several inputs (average_model: the models to average)",
    "tool.output_path": "the tool's output file",
    "tool.output_format": "convert: the format to write (as input_format)",
    "tool.vocab_path": "vocabulary file (vocabulary scripts)",
    "tool.new_vocab_path": "the other vocabulary (diff_vocab, dynamic_vocab_adapter)",
    "tool.min_count": "build_vocab: keep tokens seen at least this often",
    "tool.vocab_size": "build_vocab: keep at most this many tokens",
    "tool.processes_num": "worker processes",
    "tool.test_path": "a file of inputs, one a line",
    "tool.topn": "how many candidates to list",
    "tool.seq_length": "longest input in tokens",
    "tool.batch_size": "inputs per batch",
    "tool.max_new_tokens": "generate: tokens to add",
    "tool.temperature": "generate: sampling temperature; 0 = greedy",
    "tool.top_k": "generate: sample from the k likeliest tokens; 0 = all",
    "tool.top_p": "generate: sample from the smallest set with this probability; 1.0 = all",
    "tool.use_cache": "generate: reuse attention keys and values between steps",
}

# Groups whose options are whole runs rather than parts of one; listed with their first paragraph.
RECIPE_GROUPS = ("experiment", "hparams_search")


def field_comments(cls) -> dict[str, str]:
    """``{field: comment}`` from the ``# ...`` lines above a field and the comment after it."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^\s+(\w+)\s*:\s*[^=]+=\s*(.*)$", line)
        if match:
            inline = [part.strip() for part in _inline_comment(match.group(2)).split("#")]
            inline = [part for part in inline if part and not part.startswith("type: ignore")]
            comments[match.group(1)] = " ".join([*pending, *inline]).strip(" ;")
        pending = []
    return comments


def _inline_comment(rest: str) -> str:
    """The comment after a field's default, outside any string literal."""
    quote = None
    for i, char in enumerate(rest):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return rest[i + 1:].strip()
    return ""


def _type_name(annotation) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    match = re.fullmatch(r"Optional\[(.+)\]", text)
    return f"{match.group(1)} or null" if match else text


def _value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def composed_defaults() -> dict:
    """The config ``python main.py`` composes with no overrides (unresolved interpolations kept)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    schema.register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config")
    return OmegaConf.to_container(cfg, resolve=False)


def read_option(path: Path) -> tuple[str, str | None, dict, list[str]]:
    """``(description, package, values, defaults)`` of one group option file."""
    text = path.read_text(encoding="utf-8")
    package = None
    description: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if body.startswith("@package"):
            package = body.split(None, 1)[1].strip()
            continue
        description.append(body)
    values = yaml.safe_load(text) or {}
    defaults = []
    for entry in values.pop("defaults", []) or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                defaults.append(f"{key.replace('override ', '').lstrip('/')}={value}")
        elif entry != "_self_":
            defaults.append(f"extends {entry}")
    return _paragraphs(description), package, values, defaults


def recipe_summary(path: Path) -> str:
    """An experiment's first sentences (up to the command it reproduces) and its published number."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    lines = [line for line in lines if not line.startswith("@package")]
    head = []
    for line in lines:
        if not line or line.startswith(("python", "Published:")):
            break
        head.append(line)
    text = " ".join(head).rstrip(":, ")
    text = re.sub(r",? as the original toolkit's (README|quickstart)$", "", text)
    published = []
    for line in lines:
        if line.startswith("Published:") or (published and not published[-1].endswith((".", ")"))):
            if not line:
                break
            published.append(line)
        elif published:
            break
    return " ".join([text + ".", *published]).replace("..", ".")


def _paragraphs(lines: list[str]) -> str:
    """Comment lines joined into paragraphs (blank comment lines separate them)."""
    out, current = [], []
    for line in lines + [""]:
        if line:
            current.append(line)
        elif current:
            out.append(" ".join(current))
            current = []
    return "\n\n".join(out)


def _flatten(values, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{name}.")
        else:
            items.append((name, value))
    return items


def _groups(defaults_list: list) -> list[tuple[str, str | None]]:
    """``(group, default option)`` in the order of ``conf/config.yaml``, then the other folders."""
    groups: list[tuple[str, str | None]] = []
    for entry in defaults_list:
        if isinstance(entry, dict):
            for key, value in entry.items():
                key = key.replace("optional ", "")
                if (CONF / key).is_dir():
                    groups.append((key, value))
    named = {name for name, _ in groups}
    groups += [(d.name, None) for d in sorted(CONF.iterdir()) if d.is_dir() and d.name not in named]
    return groups


def generate() -> str:
    config_yaml = yaml.safe_load((CONF / "config.yaml").read_text(encoding="utf-8"))
    groups = _groups(config_yaml.get("defaults", []))
    defaults = composed_defaults()
    out: list[str] = []
    add = out.append
    add("# Configuration reference")
    add("")
    add(f"<!-- Generated by `{COMMAND}` from uer/config/schema.py, uer/config/tool_schema.py and conf/. "
        "tests/test_reference.py fails when this page is stale: regenerate it, do not edit it. -->")
    add("")
    add("One run is one config: `conf/config.yaml` composes one option of each group below, then the "
        "command line's `group=option` and `key=value` overrides. Every key has a type checked at "
        "composition (a typo or a wrong type fails before any work). `python main.py --cfg job KEY=VALUE ...` "
        "prints the config a command line composes. Defaults below are those of `python main.py` with no "
        "overrides; `${...}` values follow another key.")
    add("")
    add("- [Config groups](#config-groups)")
    for name, _ in groups:
        add(f"  - [`{name}`](#group-{name.replace('_', '-')})")
    add("- [Keys](#keys)")
    add("  - [top level](#top-level-keys)")
    for key, _ in SECTIONS:
        add(f"  - [`{key}`](#keys-{key})")
    add("- [Sweeps](#sweeps)")
    add("")

    add("## Config groups")
    add("")
    add("| group | default | options |")
    add("| --- | --- | --- |")
    for name, default in groups:
        options = sorted(p.stem for p in (CONF / name).glob("*.yaml"))
        add(f"| [`{name}`](#group-{name.replace('_', '-')}) | {_value(default) if default is not None else 'null'} "
            f"| {', '.join(options)} |")
    add("")
    for name, default in groups:
        add(f'<a id="group-{name.replace("_", "-")}"></a>')
        add("")
        add(f"### `{name}`")
        add("")
        add(f"Default: `{_value(default)}`. Choose with `{name}=OPTION`.")
        add("")
        recipe = name in RECIPE_GROUPS
        add("| option | what it is | what it sets |")
        add("| --- | --- | --- |")
        for path in sorted((CONF / name).glob("*.yaml")):
            description, package, values, option_defaults = read_option(path)
            if recipe:
                description = recipe_summary(path)
            package = package or name  # Hydra's default package is the group's name
            prefix = "" if package == "_global_" else f"{package}."
            values = _flatten(values)
            if recipe:  # a whole run: its groups and stage; the rest is in the file
                sets = [*option_defaults, *[f"{k}={_value(v)}" for k, v in values if k == "stage"]]
            else:
                sets = [*option_defaults, *[f"{prefix}{k}={_value(v)}" for k, v in values]]
            cells = ", ".join(s if s.startswith("extends ") else f"`{s}`" for s in sets)
            add(f"| `{path.stem}` | {_cell(description)} | {_cell(cells)} |")
        add("")

    add("## Keys")
    add("")
    add('<a id="top-level-keys"></a>')
    add("")
    add("### top level")
    add("")
    comments = field_comments(schema.Config)
    add("| key | type | default | meaning |")
    add("| --- | --- | --- | --- |")
    section_names = {key for key, _ in SECTIONS}
    for f in dataclasses.fields(schema.Config):
        if f.name in section_names:
            continue
        add(f"| `{f.name}` | {_type_name(f.type)} | `{_value(defaults.get(f.name))}` "
            f"| {_cell(_meaning(f.name, comments, defaults.get(f.name)))} |")
    add("")
    for key, cls in SECTIONS:
        add(f'<a id="keys-{key}"></a>')
        add("")
        add(f"### `{key}` ({cls.__name__})")
        add("")
        doc = inspect.getdoc(cls)
        if doc and not doc.startswith(f"{cls.__name__}("):  # not the dataclass's generated signature
            add(" ".join(doc.split()))
            add("")
        comments = field_comments(cls)
        section = defaults.get(key, {})
        add("| key | type | default | meaning |")
        add("| --- | --- | --- | --- |")
        for f in dataclasses.fields(cls):
            add(f"| `{key}.{f.name}` | {_type_name(f.type)} | `{_cell(_value(section.get(f.name)))}` "
                f"| {_cell(_meaning(f'{key}.{f.name}', comments, section.get(f.name)))} |")
        add("")

    add("## Sweeps")
    add("")
    add("`python main.py -m KEY=A,B ...` runs one job per combination; `hydra.callbacks.sweep_results` "
        "(uer/sweep.py) writes `results.csv` and `results.md` into the sweep directory. Its settings:")
    add("")
    add("| key | default | meaning |")
    add("| --- | --- | --- |")
    callback_comments = _yaml_comments(CONF / "config.yaml")
    callback = config_yaml.get("hydra", {}).get("callbacks", {}).get("sweep_results", {})
    for k, v in callback.items():
        if k == "_target_":
            continue
        add(f"| `hydra.callbacks.sweep_results.{k}` | `{_value(v)}` | {_cell(callback_comments.get(k, ''))} |")
    add("")
    return "\n".join(out)


def _meaning(key: str, comments: dict, default) -> str:
    """The schema's comment on ``key``, else MEANINGS, else where an interpolated default comes from."""
    text = comments.get(key.rsplit(".", 1)[-1]) or MEANINGS.get(key, "")
    if isinstance(default, str) and default.startswith("${") and default.endswith("}"):
        source = default[2:-1]
        follows = f"follows `{source}`" + (" (set by `size=`)" if source.startswith("model.") else "")
        text = f"{text}; {follows}" if text else follows
    return text


def _yaml_comments(path: Path) -> dict[str, str]:
    """``{key: inline comment}`` of a YAML file (last one wins for repeated keys)."""
    comments = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([\w.]+):\s*[^#]*#\s*(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def main() -> None:
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()
