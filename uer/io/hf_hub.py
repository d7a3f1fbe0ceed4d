"""A Hugging Face hub id where a model path is expected: ``pretrained_model_path=uer/chinese_roberta_L-4_H-512``.

The id resolves through ``huggingface_hub`` to a snapshot directory in its cache (``HF_HOME``,
``HF_HUB_CACHE``), downloaded first where the network allows; with ``HF_HUB_OFFLINE=1`` only
the cache is read.  Only the files a model directory is read for are fetched (config, weights,
tokenizer files), safetensors in preference to torch ``.bin`` when the repository has both.

A text is taken for a hub id only when no such local path exists and it has the hub's shape
(``owner/name``, optionally ``@revision``) without a file suffix (``.pt``, ``.bin``, ...): a
mistyped local file is reported as missing, never looked up online.  (The owner may also be a
local directory: ``uer/...`` is the original toolkit's hub organisation and this package's
folder.)  Every hub error says that no local path of that name exists either.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional

from uer.errors import UerError, reason

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9])(?:@(?P<revision>[\w./-]+))?$")
WEIGHT_SUFFIXES = (".pt", ".bin", ".safetensors", ".ckpt", ".pth", ".json", ".txt", ".model")
MODEL_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]  # config, tokenizer files (.json/.txt/.model), weights
TORCH_WEIGHTS = ["pytorch_model*.bin"]
OFFLINE_VALUES = {"1", "on", "yes", "true"}


def hub_id(text: str) -> Optional[tuple[str, Optional[str]]]:
    """``(repo_id, revision)`` when ``text`` names a hub model rather than a local path, else None."""
    text = str(text)
    if Path(text).exists():
        return None
    match = HUB_ID.match(text)
    if match is None:
        return None
    repo = match.group("repo")
    if repo.lower().endswith(WEIGHT_SUFFIXES):
        return None
    return repo, match.group("revision")


def offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it, but at call time (its own constant is read at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in OFFLINE_VALUES


def model_location(text: str, key: str) -> Path:
    """Where the model ``text`` names lies: the local path itself, or for a hub id its snapshot directory
    (downloaded unless offline); ``key`` names the setting in error messages.  Hub errors (not cached
    offline, no such repository, no network) are one line."""
    hub = hub_id(text)
    if hub is None:
        return Path(text)
    return _snapshot(*hub, text, key)


def _snapshot(repo: str, revision: Optional[str], text: str, key: str) -> Path:
    from huggingface_hub import snapshot_download  # lazy: its HTTP stack is needed only for a hub id
    from huggingface_hub.errors import (  # lazy: as above
        GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    where = f"no local path {text} exists, and the hub model {repo}{'@' + revision if revision else ''}"
    local_only = offline()
    try:
        directory = Path(snapshot_download(repo, revision=revision, local_files_only=local_only,
                                           allow_patterns=MODEL_FILES))
        if not any(directory.glob("*.safetensors")):
            directory = Path(snapshot_download(repo, revision=revision, local_files_only=local_only,
                                               allow_patterns=MODEL_FILES + TORCH_WEIGHTS))
    except LocalEntryNotFoundError:
        if local_only:
            raise UerError(f"{key} {text}: {where} is not in the local cache and HF_HUB_OFFLINE=1 "
                           "forbids downloading it; download it once with the network on (unset HF_HUB_OFFLINE), "
                           "or give a local model directory") from None
        raise UerError(f"{key} {text}: {where} could not be downloaded (no network?) and is not in "
                       "the local cache; check the connection, or give a local model directory") from None
    except GatedRepoError:
        raise UerError(f"{key} {text}: {where} is gated; accept its terms on huggingface.co and log "
                       "in (huggingface-cli login or HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise UerError(f"{key} {text}: {where} does not exist (no such revision); check the name after @") \
            from None
    except RepositoryNotFoundError:
        raise UerError(f"{key} {text}: {where} does not exist (or it is private: log in with huggingface-cli "
                       "login or HF_TOKEN); check the path or the hub id") from None
    except OSError as err:  # disk full, unwritable cache, network errors (huggingface_hub's are OSError)
        raise UerError(f"{key} {text}: {where} could not be fetched ({reason(err)}); check the "
                       "network and the cache directory (HF_HOME)") from None
    log.info("%s=%s: the hub model's files in %s", key, text, directory)
    return directory
