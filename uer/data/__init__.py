"""Pre-training data: corpus -> memory-mapped dataset (:mod:`uer.data.build`) and batches
(:mod:`uer.data.pretrain_dataset`).  Kept free of imports so that preprocessing workers
do not load torch."""
