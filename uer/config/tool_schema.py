"""Schema of the ``tool`` group: ``python main.py stage=tool tool=NAME tool.KEY=VALUE ...``.

One typed node serves every tool (converters and the original toolkit's model/vocabulary
scripts); each tool reads the keys it needs and says which one is missing.  Keeping them
in one schema means a typo is still caught at composition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ToolConfig:
    name: Optional[str] = None  # set by conf/tool/NAME.yaml
    input_path: Optional[str] = None
    input_paths: list[str] = field(default_factory=list)
    output_path: Optional[str] = None
    # convert: uer (original .bin) | hf (Hugging Face BERT .bin/.safetensors) | tf (Google TF checkpoint) | uer_ckpt (ours)
    input_format: Optional[str] = None
    output_format: Optional[str] = None
    # vocabulary scripts
    corpus_path: Optional[str] = None
    vocab_path: Optional[str] = None
    new_vocab_path: Optional[str] = None
    min_count: int = 1
    vocab_size: Optional[int] = None
    processes_num: int = 1
    # inspection / generation scripts
    text: Optional[str] = None
    test_path: Optional[str] = None
    topn: int = 10
    seq_length: int = 128
    batch_size: int = 32
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    use_cache: bool = True
    pooling: str = "mean"  # extract_feature: mean | first | last | max (over each line's tokens)
