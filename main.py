"""The one entry point: compose conf/ into one config and run its stage.

    python main.py stage=preprocess target=mlm preprocess.corpus_path=corpora/book_review.txt
    python main.py stage=pretrain encoder=bert size=tiny target=mlm pretrain.total_steps=200
"""

import hydra
from omegaconf import DictConfig

from uer.config.schema import register_configs
from uer.stages import run_stage

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    return run_stage(cfg)


if __name__ == "__main__":
    main()
