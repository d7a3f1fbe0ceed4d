"""The one entry point: compose conf/ into one config and run its stage.

    python main.py stage=preprocess target=mlm preprocess.corpus_path=corpora/book_review.txt
    python main.py stage=pretrain encoder=bert size=tiny target=mlm pretrain.total_steps=200
"""

if __name__ == "__main__":  # before torch is loaded: glibc reads its malloc settings at start-up
    from uer.malloc_tuning import restart_with_tuned_malloc

    restart_with_tuned_malloc(__file__)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from uer.config.schema import register_configs  # noqa: E402
from uer.stages import run_stage  # noqa: E402

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    return run_stage(cfg)


if __name__ == "__main__":
    main()
