"""What the forkserver of a multi-process run (:func:`uer.launch._start_method`) imports once, for every worker it
forks, beyond torch and the entry's module: torch's compiler stack (dynamo, over a second of CPU), which
torch's optimizers import when the first one is built (``Optimizer.add_param_group`` is wrapped to be skipped by
dynamo), so each worker would otherwise import it again before its first step."""

import torch

torch.compiler.disable(lambda: None)  # the public call that imports the compiler stack, and does nothing else
