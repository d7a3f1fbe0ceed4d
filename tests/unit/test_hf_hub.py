"""Hub ids where a model path is expected: what counts as one, the offline cache, one-line refusals
(a fine-tuning started from a hub id: tests/stages/test_start_from_hub.py).

Nothing is downloaded: every test runs with ``HF_HUB_OFFLINE=1`` over a cache built in ``tmp_path``
with the hub's own layout (``models--OWNER--NAME/refs/main`` naming a ``snapshots/COMMIT`` folder).
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from uer.errors import UerError
from uer.io.hf_hub import hub_id, model_location
from uer_testing import cached_snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline hub cache holding ``acme/tiny`` at commit ``c0ffee`` (a config.json only)."""
    cache = tmp_path / "hub"
    snapshot = cached_snapshot(cache, "acme/tiny")
    (snapshot / "config.json").write_text("{}\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


@pytest.mark.parametrize("text, expected", [
    ("uer/chinese_roberta_L-4_H-512", ("uer/chinese_roberta_L-4_H-512", None)),
    ("google-bert/bert-base-chinese@main", ("google-bert/bert-base-chinese", "main")),
    ("outputs/model.pt", None),  # a file name: a missing local file, never a hub lookup
    ("models/weights.safetensors", None),
    ("/abs/path/model", None),
    ("./owner/name", None),
    ("model", None),
    ("a/b/c", None),
])
def test_what_counts_as_a_hub_id(text, expected):
    assert hub_id(text) == expected


def test_an_existing_local_path_is_never_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").mkdir()
    assert hub_id("owner/name") is None
    assert model_location("owner/name", "pretrained_model_path") == Path("owner/name")


def test_a_cached_hub_id_resolves_offline_to_its_snapshot(hub_cache):
    assert model_location("acme/tiny", "pretrained_model_path") == hub_cache


def test_an_uncached_hub_id_offline_is_one_line_naming_it(hub_cache):
    with pytest.raises(UerError) as err:
        model_location("acme/absent", "pretrained_model_path")
    message = str(err.value)
    assert "\n" not in message
    assert "pretrained_model_path acme/absent" in message and "HF_HUB_OFFLINE" in message
    assert "no local path acme/absent exists" in message


def test_an_uncached_revision_offline_is_refused(hub_cache):
    with pytest.raises(UerError, match=r"acme/tiny@v2 is not in the local cache"):
        model_location("acme/tiny@v2", "infer.load_model_path")
