"""What an encoder's output at position ``i`` has seen; components declare which they produce or need.

* ``CAUSAL`` -- positions ``0..i`` only (GPT, one-directional RNNs, causal convolutions);
* ``BIDIRECTIONAL`` -- every position (BERT; one RNN stack reading both ways);
* ``STACKS`` -- separate forward and backward stacks, concatenated (ELMo's ``bilstm``):
  the forward half has seen ``0..i``, the backward half ``i..end``;
* ``PREFIX`` -- the whole first segment (the prefix) and positions ``0..i`` (a prefix LM, UniLM's
  seq-to-seq mask): bidirectional over the prefix, causal after it.

An encoder class declares ``context(cfg)``; a target class declares the contexts it
accepts (``contexts``) and why (``needs``).  :mod:`uer.models.compat` checks a
combination with those declarations before any work starts.
"""

CAUSAL = "causal"
BIDIRECTIONAL = "bidirectional"
STACKS = "forward+backward stacks"
PREFIX = "bidirectional over the prefix, causal after it"
ALL_CONTEXTS = (CAUSAL, BIDIRECTIONAL, STACKS, PREFIX)
