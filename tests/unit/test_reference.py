"""docs/reference.md is generated from the schemas and conf/: the committed page must be the generator's output."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from uer import reference
from uer.composition import registries
from uer.config.run import STAGE_ROOTS
from uer_testing import ROOT


@pytest.fixture(scope="module")
def generated() -> tuple[str, dict]:
    """The generator's page, generated once for the checks, and the node it composed for each ``(group, option)``
    (composing every option is most of its time: the checks read these instead of composing them again)."""
    composed = {}
    compose_group_option = reference.compose_group_option

    def recording(group: str, option: str):
        composed[group, option] = node = compose_group_option(group, option)
        return node

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference, "compose_group_option", recording)
        return reference.generate(), composed


@pytest.fixture(scope="module")
def page(generated) -> str:
    return generated[0]


def test_committed_reference_is_current(page):
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == page, (
        "docs/reference.md is stale: regenerate it with `python -m uer.reference > docs/reference.md`")


def test_reference_shows_every_option_with_its_own_keys(generated):
    page, composed = generated
    for registry in registries():
        for path in (ROOT / "conf" / registry.group).glob("*.yaml"):
            option = composed.get((registry.group, path.stem))
            if option is None:  # an option the page lists without composing it: composed here
                option = reference.compose_group_option(registry.group, path.stem)
            section = page.split(f"#### `{registry.group}={path.stem}`", 1)[1].split("####", 1)[0]
            for key, value in option.items():
                shown = f"| `{registry.group}.{key}." if OmegaConf.is_dict(value) else f"| `{registry.group}.{key}` |"
                assert shown in section, f"{registry.group}={path.stem}: {key}"  # a nested node: its keys
    for name, root in STAGE_ROOTS.items():
        section = next((f for f in dataclasses.fields(root) if f.name == name), None)
        if section is not None and dataclasses.is_dataclass(section.default_factory):
            for f in dataclasses.fields(section.default_factory):
                nested = dataclasses.is_dataclass(f.default_factory)
                assert f"| `{name}.{f.name}{'.' if nested else '` |'}" in page, f"{name}.{f.name}"
    for group in (ROOT / "conf").iterdir():
        if group.is_dir():
            assert f"### `{group.name}`" in page


def test_every_key_has_a_meaning(page):
    empty = [line for line in page.splitlines() if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert not empty, empty
