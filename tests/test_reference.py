"""docs/reference.md is generated from the schemas and conf/: the committed page must be the generator's output."""

import dataclasses

from uer.config import reference, schema
from uer_testing import ROOT


def test_committed_reference_is_current():
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == reference.generate(), (
        "docs/reference.md is stale: regenerate it with `python -m uer.config.reference > docs/reference.md`")


def test_reference_lists_every_key_group_and_option():
    page = reference.generate()
    for key, cls in reference.SECTIONS:
        for f in dataclasses.fields(cls):
            assert f"| `{key}.{f.name}` |" in page, f"{key}.{f.name}"
    for f in dataclasses.fields(schema.Config):
        if f.name not in {key for key, _ in reference.SECTIONS}:
            assert f"| `{f.name}` |" in page, f.name
    for group in (ROOT / "conf").iterdir():
        if group.is_dir():
            assert f"### `{group.name}`" in page
            for option in group.glob("*.yaml"):
                assert f"| `{option.stem}` |" in page, f"{group.name}/{option.stem}"


def test_every_key_has_a_meaning():
    page = reference.generate()
    empty = [line for line in page.splitlines() if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert not empty, empty
