"""Fine-tuning machinery: what ``stage=finetune`` orchestrates and other ways of fine-tuning reuse.

* :mod:`uer.finetuning.setup` -- options, device, starting weights, the task, a new model;
* :mod:`uer.finetuning.loop` -- the batches of one file, training with dev evaluations,
  early stopping and resuming (:func:`~uer.finetuning.loop.fit`), scoring;
* :mod:`uer.finetuning.checkpoints` -- ``best.pt`` and ``last.pt``, and whether a run may
  write its output directory;
* runners, one per way of fine-tuning (a task names its runner in ``finetune_runner``):
  :mod:`~uer.finetuning.single` (one train file, one dev file), :mod:`~uer.finetuning.cross_validation`
  (k folds of one file), :mod:`~uer.finetuning.multi_task` (several datasets, one backbone).
"""
