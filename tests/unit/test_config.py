"""Composition: every group composes, sizes interpolate, typos and wrong types fail naming the key."""

import pytest
from hydra.errors import ConfigCompositionException

from uer_testing import compose_config

COMPOSE_ERRORS = ConfigCompositionException


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large", "albert_base", "albert_large",
                                  "albert_xlarge", "albert_xxlarge"])
def test_every_size_preset_composes_and_interpolates(size):
    cfg = compose_config([f"size={size}"])
    assert cfg.encoder.hidden_size == cfg.model.hidden_size
    assert cfg.embedding.emb_size == cfg.model.emb_size
    assert cfg.encoder.parameter_sharing == size.startswith("albert")


def test_tiny_matches_original_sizes():
    cfg = compose_config(["size=tiny"])
    assert (cfg.encoder.hidden_size, cfg.encoder.layers_num, cfg.encoder.heads_num, cfg.encoder.feedforward_size) == (
        384, 3, 6, 1536)


def test_gpt_encoder_brings_word_pos_embedding_and_causal_mask():
    cfg = compose_config(["encoder=gpt", "target=lm"])
    assert cfg.embedding.type == "word_pos"
    assert cfg.encoder.mask == "causal"
    # An explicit choice on the command line still wins.
    assert compose_config(["encoder=gpt", "embedding=word_pos_seg"]).embedding.type == "word_pos_seg"


def test_unknown_key_fails_at_composition_naming_it():
    with pytest.raises(COMPOSE_ERRORS) as err:
        compose_config(["encoder.hiden_size=1"])
    assert "hiden_size" in str(err.value)


def test_wrong_type_fails_at_composition_naming_it():
    with pytest.raises(COMPOSE_ERRORS) as err:
        compose_config(["pretrain.total_steps=many"])
    assert "total_steps" in str(err.value)


def test_unknown_group_option_fails():
    with pytest.raises(Exception) as err:
        compose_config(["encoder=bret"])
    assert "bret" in str(err.value)
