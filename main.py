"""The one entry point: compose conf/ into one config and run its stage (uer/cli.py).

    python main.py stage=preprocess target=mlm preprocess.corpus_path=corpora/book_review.txt
    python main.py stage=pretrain encoder=bert size=tiny target=mlm pretrain.total_steps=200
    python main.py task=classifier finetune.train_path=...      # task= implies stage=finetune
"""

if __name__ == "__main__":  # before torch is loaded: glibc reads its malloc settings at start-up
    from uer.malloc_tuning import restart_with_tuned_malloc

    restart_with_tuned_malloc(__file__)

    from uer.cli import main

    main()
