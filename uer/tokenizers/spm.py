"""SentencePiece tokenization: the model supplies both the segmentation and the ids.

The text goes to the model unchanged (SentencePiece applies the normalization stored in
the model); ``do_lower_case`` is ignored, as in the original toolkit.
"""

from __future__ import annotations

from typing import Sequence

from uer.tokenizers.vocab import Vocab, VocabTokenizer, open_spm


class SpmTokenizer(VocabTokenizer):
    kind = "spm"

    def __init__(self, model_path, serialized: bytes | None = None):
        """The model at ``model_path``, or its ``serialized`` bytes (a checkpoint's copy)."""
        self.processor = open_spm(model_path, serialized)
        super().__init__(Vocab.from_spm_processor(self.processor, model_path), source="spm")

    def serialized(self) -> bytes:
        return self.processor.serialized_model_proto()

    def tokenize(self, text: str) -> list[str]:
        return self.processor.encode(text, out_type=str)

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.processor.encode(list(texts), out_type=int)
