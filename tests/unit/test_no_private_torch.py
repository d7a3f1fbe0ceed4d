"""No private torch APIs: nothing in the package, the benches, the tests or main.py calls ``torch._name``
(or ``torch.nn._name``, ``F._name``, ...), which may change or vanish in any release."""

import re
from pathlib import Path

from uer_testing import ROOT

# torch._name, torch.nn.functional._name, from torch._name import ..., F._name, nn._name; not torch.__version__
PRIVATE = re.compile(r"\b(?:torch(?:\.\w+)*|F|nn)\._[A-Za-z]|\bfrom\s+torch(?:\.\w+)*\._[A-Za-z]")


def sources():
    yield ROOT / "main.py"
    for folder in ("uer", "bench", "tests"):
        yield from (path for path in sorted((ROOT / folder).rglob("*.py")) if path != Path(__file__))  # not this file


def test_the_pattern_finds_private_calls_and_spares_public_names():
    assert PRIVATE.search("grad = torch._softmax_backward_data(g, p, -1, dtype)")
    assert PRIVATE.search("from torch._dynamo import config")
    assert PRIVATE.search("x = F._canonical_mask(m)")
    assert PRIVATE.search("torch.nn.modules._utils")
    assert not PRIVATE.search("print(torch.__version__)")
    assert not PRIVATE.search("torch.autograd.grad(probs, scores, grad)")


def test_no_private_torch_calls():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sources()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if PRIVATE.search(line)]
    assert not found, "private torch APIs in use:\n" + "\n".join(found)
