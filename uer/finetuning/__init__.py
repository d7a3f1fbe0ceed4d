"""Fine-tuning machinery: what ``stage=finetune`` orchestrates and other ways of fine-tuning reuse.

* :mod:`uer.finetuning.setup` -- options, device, starting weights, the task, a new model;
* :mod:`uer.finetuning.batches` -- the batches of one file;
* :mod:`uer.finetuning.loop` -- training with dev evaluations, early stopping and resuming
  (:func:`~uer.finetuning.loop.fit`) in the training session pre-training uses too
  (:mod:`uer.training.session`);
* :mod:`uer.finetuning.evaluation` -- when the dev data is scored, the best so far, the
  session callback; :mod:`uer.finetuning.policies` -- what follows each evaluation (log,
  ``best.pt``/``last.pt``, ``results.jsonl``);
* :mod:`uer.finetuning.scores` -- scoring a model, showing scores;
  :mod:`uer.finetuning.results` -- ``results.jsonl``;
* :mod:`uer.finetuning.checkpoints` -- ``best.pt`` and ``last.pt``, and whether a run may
  write its output directory;
* runners, one per way of fine-tuning, in the registry :mod:`uer.finetuning.runners` that a
  task names its runner in (``finetune_runner``): ``single`` (:mod:`~uer.finetuning.single`,
  one train file, one dev file), ``cross_validation`` (:mod:`~uer.finetuning.cross_validation`,
  k folds of one file), ``multi_task`` (:mod:`~uer.finetuning.multi_task`, several datasets,
  one backbone).
"""
