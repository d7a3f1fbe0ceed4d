"""Ids back to text, for generated tokens: WordPiece ``##`` pieces joined, spaces only between ASCII words
(Chinese characters stand side by side); a Hugging Face tokenizer decodes with its own decoder."""

from __future__ import annotations

from typing import Sequence


def detokenize(prompt: str, tokens: list[str], kind: str) -> str:
    """``prompt`` followed by ``tokens``: WordPiece ``##`` pieces joined, spaces between ASCII words."""
    if kind == "space":
        return " ".join([prompt, *tokens]) if tokens else prompt
    text = prompt
    for token in tokens:
        if token.startswith("##") and len(token) > 2:
            text += token[2:]
        elif text and _wordlike(text[-1]) and _wordlike(token[0]):
            text += " " + token
        else:
            text += token
    return text


def decode_ids(tokenizer, ids: Sequence[int], prompt: str = "") -> str:
    """``prompt`` followed by the text of ``ids``."""
    if tokenizer.kind == "hf":  # its own decoder knows its pieces (bytes, ▁, ##)
        return prompt + tokenizer.decode(list(ids))
    return detokenize(prompt, tokenizer.convert_ids_to_tokens(ids), tokenizer.kind)


def _wordlike(char: str) -> bool:
    return char.isascii() and char.isalnum()
