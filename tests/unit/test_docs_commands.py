"""Every command in README.md and docs/*.md is one this code accepts, and every relative link resolves.

The commands are those of the fenced ``bash``/``sh``/``shell``/``console`` blocks (``\\``
continuation lines joined, ``#`` comments dropped, ``&&`` chains split; in a ``console`` block
only the ``$ `` lines are commands, the others are their output).  Each is checked the way it
would start, in-process and before any work:

* ``python main.py ARGS`` (also ``python main.py -m ...`` and ``torchrun ... main.py ARGS``):
  the overrides compose with the real config and pass every check ``main.py`` makes before any
  work (``uer.cli.preflight``: keys, options, types, bounds, combinations, a sweep's jobs and
  outputs).  Two things are not checked, because they belong to the machine, not the text:
  what the machine has (``preflight(..., machine=False)``: ``hardware=8gpu`` and ``hardware=slurm``
  are documented for other machines; a transcript that shows an error is checked as the
  CPU-only machine that printed it) and the files that earlier commands of the docs produce.  ``...`` stands for "the rest of the command as above" and is
  dropped; the keys written around it are checked.  A ``console`` command followed by an
  ``error:`` line must be refused with exactly that line, unless the error is one the run
  raises once it works (RUNTIME_ERRORS, each with its reason), in which case the command must
  pass the checks before any work.
* ``python bench/X.py ...``, ``python experiments/X.py ...``, ``python -m uer.X ...``: the script
  or module exists and its argparse parser accepts the arguments (it is run up to its
  ``parse_args`` and stopped there); a script without a parser takes no arguments.
* ``pip install ...``, ``python -m pip install ...``: the constraint files and the editable
  path exist, and every extra named is one pyproject.toml declares.
* ``bash FILE``: the file exists; ``python -m pytest ARGS``: every path it names exists.

Any other command fails the test: add a checker here, or show it in a ``text`` block if it is
not meant to be run as written.  ``test_a_wrong_command_is_refused`` feeds deliberately wrong
commands to the same checker.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import runpy
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

# What the commands are checked with; the only imports of uer in this file.
from uer.cli import normalize_overrides, preflight, split_arguments
from uer.errors import UerError, one_line

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)```\s*([\w-]*)\s*$")

# Errors the docs show that a run raises once it works, not before: the command must pass the
# checks before any work, and the message is the run's own test's business (named here).
RUNTIME_ERRORS = {
    "error: cannot resume:": "the checkpoint's settings are compared when the run resumes (tests/stages/test_run_config.py, resume)",
    "error: output_model_path=outputs/models/br_tiny is in use by another run":
        "the lock of another live run (tests/stages/test_run_config.py, locks)",
    "error: outputs/data/br_mlm was built for target": "read from the dataset's meta.json when training opens it",
    "error: training stopped:": "the loss becomes nan during training",
    "error: finetune.dev_path=missing.tsv: no such file": "checked by the run before it starts its workers "
                                                         "(tests/distributed/test_distributed.py)",
    "error: cannot write /small/disk/data: No space left": "the disk fills while the dataset is written "
                                                          "(tests/stages/test_robustness.py, full disk)",
    "error: pretrained_model_path=outputs/models/br_tiny/step_200.pt sets the architecture":
        "compared with the checkpoint file, which an earlier command of the docs writes",
}


class Refused(Exception):
    """A documented command that this code would not accept as written."""


@dataclass
class Command:
    where: str  # file:line
    text: str
    expected_error: Optional[str] = None  # the ``error:`` line a console block shows after it

    def __str__(self):
        return f"{self.where}: {self.text}"


# ----------------------------------------------------------------------------------- extraction

def _join_continuations(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    joined, start, parts = [], None, []
    for number, line in lines:
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        joined.append((start, " ".join(part.strip() for part in parts)))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(part.strip() for part in parts)))
    return joined


def _split_chain(text: str) -> list[str]:
    """``a && b`` -> ``[a, b]`` (outside quotes), and without a trailing ``# comment``."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if token in ("&&", "||", ";"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [shlex.join(tokens) for tokens in commands if tokens]


def commands_in(path: Path) -> list[Command]:
    """The commands of the shell blocks of one Markdown file."""
    rel = path.relative_to(ROOT)
    out: list[Command] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    block, language = None, ""
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if fence:
            if block is None:
                block, language = [], fence.group(2)
                continue
            if language in SHELL_BLOCKS:
                out.extend(_block_commands(rel, block, console=language == "console"))
            block = None
            continue
        if block is not None:
            block.append((number, line.strip()))
    return out


def _block_commands(rel: Path, block: list[tuple[int, str]], console: bool) -> list[Command]:
    commands: list[Command] = []
    if console:
        entries, pending = [], []
        for number, line in block:
            if line.startswith("$ ") or (pending and pending[-1][1].rstrip().endswith("\\")):
                pending.append((number, line.removeprefix("$ ")))
                continue
            for start, text in _join_continuations(pending):
                entries.append([start, text, None])
            pending = []
            if line.startswith("error: ") and entries and entries[-1][2] is None:
                entries[-1][2] = line
        for start, text in _join_continuations(pending):
            entries.append([start, text, None])
        for start, text, error in entries:
            commands += [Command(f"{rel}:{start}", part, error) for part in _split_chain(text)]
        return commands
    body = [(number, line) for number, line in block if line and not line.startswith("#")]
    for start, text in _join_continuations(body):
        commands += [Command(f"{rel}:{start}", part) for part in _split_chain(text)]
    return commands


ALL_COMMANDS = [command for path in DOCS for command in commands_in(path)]


# ----------------------------------------------------------------------------------- checkers

def check_command(text: str, expected_error: Optional[str] = None) -> None:
    """Refused when ``text`` is not a command this code accepts as written."""
    tokens = shlex.split(text)
    if not tokens:
        raise Refused("empty command")
    program, args = tokens[0], tokens[1:]
    if program in ("python", "python3"):
        if args[:1] == ["main.py"]:
            return check_main(args[1:], expected_error)
        if args[:2] == ["-m", "pip"]:
            return check_pip(args[2:])
        if args[:2] == ["-m", "pytest"]:
            return check_pytest(args[2:])
        if args[:1] == ["-m"] and len(args) > 1:
            return check_module(args[1], args[2:])
        if args and args[0].endswith(".py"):
            return check_script(args[0], args[1:])
    if program in ("pip", "pip3"):
        return check_pip(args)
    if program == "bash" and args:
        return _exists(args[0])
    if program == "torchrun":
        if "main.py" not in args:
            raise Refused("torchrun without main.py")
        return check_main(args[args.index("main.py") + 1:], expected_error)
    raise Refused(f"no checker for {program!r} commands: add one to tests/unit/test_docs_commands.py, "
                  "or show the command in a `text` block")


def _exists(path: str) -> None:
    if not (ROOT / path).exists():
        raise Refused(f"{path} does not exist")


def check_main(args: list[str], expected_error: Optional[str] = None) -> None:
    flags, overrides = split_arguments([arg for arg in args if arg != "..."])
    multirun = bool({"-m", "--multirun"} & set(flags))
    unknown = [flag for flag in flags if flag.startswith("-") and flag not in
               {"-m", "--multirun", "--cfg", "-c", "--resolve", "--info", "-i", "--help", "-h", "--hydra-help"}]
    if unknown:
        raise Refused(f"unknown flag(s) {unknown}")
    try:
        # a transcript with its error was printed by a machine like this one (no GPU, no SLURM): check as it did
        preflight(normalize_overrides(overrides), multirun=multirun, machine=expected_error is not None)
    except UerError as err:
        said = f"error: {one_line(str(err))}"
        if expected_error is None:
            raise Refused(said) from None
        if said != expected_error:
            raise Refused(f"the docs say\n  {expected_error}\nbut the command is refused with\n  {said}") from None
        return
    if expected_error is not None and not any(expected_error.startswith(prefix) for prefix in RUNTIME_ERRORS):
        raise Refused(f"the docs say the command is refused with\n  {expected_error}\nbut it passes the checks "
                      "before any work (if the run raises it later, add it to RUNTIME_ERRORS with the reason)")


class _Parsed(Exception):
    pass


def _run_up_to_parse_args(run, argv: list[str]) -> None:
    """Run a script or module as ``__main__`` with ``argv`` until it has parsed its arguments."""
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        original(self, args, namespace)  # exits (SystemExit 2) on arguments it does not accept
        raise _Parsed()

    saved_argv, saved_path = sys.argv, list(sys.path)
    argparse.ArgumentParser.parse_args = parse_args
    try:
        sys.argv = argv
        run()
    except _Parsed:
        return
    except SystemExit as err:
        if err.code not in (0, None):
            raise Refused(f"{' '.join(argv)}: its parser refuses the arguments") from None
        return
    finally:
        argparse.ArgumentParser.parse_args = original
        sys.argv = saved_argv
        sys.path[:] = saved_path
    raise Refused(f"{' '.join(argv)}: ran to the end without parsing arguments")


def check_script(script: str, args: list[str]) -> None:
    path = ROOT / script
    if not path.is_file():
        raise Refused(f"{script} does not exist")
    if "ArgumentParser" not in path.read_text(encoding="utf-8"):
        if args:
            raise Refused(f"{script} takes no arguments, but the docs give {args}")
        return

    def run():
        sys.path.insert(0, str(path.parent))
        runpy.run_path(str(path), run_name="__main__")

    _run_up_to_parse_args(run, [str(path), *args])


def check_module(module: str, args: list[str]) -> None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise Refused(f"no module {module}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    if "ArgumentParser" not in source:
        if args:
            raise Refused(f"python -m {module} takes no arguments, but the docs give {args}")
        return
    _run_up_to_parse_args(lambda: runpy.run_module(module, run_name="__main__", alter_sys=False),
                          [spec.origin, *args])


def _extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def check_pip(args: list[str]) -> None:
    if args[:1] != ["install"]:
        raise Refused(f"pip {' '.join(args)}: only `pip install` is documented")
    args = iter(args[1:])
    for arg in args:
        if arg in ("-c", "--constraint", "-r", "--requirement"):
            _exists(next(args, ""))
        elif arg in ("-e", "--editable"):
            target = next(args, "")
            path, _, extras = target.partition("[")
            _exists(path)
            for extra in filter(None, extras.rstrip("]").split(",")):
                if extra.strip() not in _extras():
                    raise Refused(f"pyproject.toml declares no extra {extra!r} (it has {sorted(_extras())})")
        elif arg.startswith("-"):
            continue
        else:
            raise Refused(f"pip install {arg}: the docs install only this project (-e) and its constraints")


def check_pytest(args: list[str]) -> None:
    args = iter(args)
    for arg in args:
        if arg in ("-m", "-k"):
            next(args, None)
        elif not arg.startswith("-"):
            _exists(arg.split("::")[0])


# ----------------------------------------------------------------------------------- the tests

@pytest.fixture
def machine_independent(monkeypatch):
    """What the machine has is not the docs' (preflight runs with machine=False: a GPU or SLURM command is
    checked on a CPU machine too); a bench script's import must not tune this process either."""
    monkeypatch.setenv("UER_MALLOC_TUNING", "0")


def test_the_docs_hold_commands_of_every_kind():
    texts = [command.text for command in ALL_COMMANDS]
    assert any(t.startswith("python main.py -m ") for t in texts)
    assert any(t.startswith("python main.py stage=preprocess") for t in texts)
    assert any(t.startswith("pip install") for t in texts)
    assert any(t.startswith("python bench/") for t in texts)
    assert "python -m pytest -q" in texts
    assert any(command.expected_error for command in ALL_COMMANDS)


_CHECKED: dict[tuple[str, Optional[str]], Optional[str]] = {}  # a command the docs repeat is composed once


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[command.where for command in ALL_COMMANDS])
def test_documented_command_is_accepted(command, machine_independent):
    key = (command.text, command.expected_error)
    if key not in _CHECKED:
        try:
            check_command(command.text, command.expected_error)
            _CHECKED[key] = None
        except Refused as err:
            _CHECKED[key] = str(err)
    if _CHECKED[key] is not None:
        pytest.fail(f"{command}\n{_CHECKED[key]}", pytrace=False)


WRONG = {  # a deliberately wrong command: what the refusal must say
    "python main.py encoder=lstm encoder.hiden_size=1": "not a key of encoder=lstm",
    "python main.py encoder=transformerr": "encoder=transformerr is not an option",
    "python main.py stage=finetune pretrain.learning_rate=1": "belongs to stage=pretrain",
    "python main.py pretrain.learning_rate=-1": "must be a positive finite number",
    "python main.py -m task=classifier finetune.learning_rate=1e-4,abc": "could not be converted",
    "python main.py task=classifier finetune.learning_rate=1e-5,3e-5": "add -m",
    "python main.py stage=pretrain task=ner": "task= is a choice of stage=finetune",
    "python main.py stage=pretrain ... --cfgg job": "unknown flag",
    "torchrun --nproc_per_node 2 main.py encoder=bert encoder.nosuch=1": "encoder.nosuch is not a key",
    "python bench/pretrain_speed.py --nosuch 3": "its parser refuses the arguments",
    "python bench/no_such_bench.py": "does not exist",
    "python bench/results.py --size tiny": "takes no arguments",
    "python -m uer.no_such_module": "no module",
    'pip install -c .ci/constraints.txt -e ".[nosuchextra]"': "declares no extra 'nosuchextra'",
    "pip install -c .ci/no_such_constraints.txt -e .": "does not exist",
    "bash .ci/no_such_script": "does not exist",
    "python -m pytest tests/no_such_test.py": "does not exist",
    "tensorboard --logdir outputs": "no checker",  # a kind of command nothing checks must not pass silently
}


@pytest.mark.parametrize("text", WRONG)
def test_a_wrong_command_is_refused(text, machine_independent):
    with pytest.raises(Refused, match=re.escape(WRONG[text])):
        check_command(text)


def test_a_documented_error_must_be_the_one_printed(machine_independent):
    check_command("python main.py +encoder.hiden_size=1",
                  "error: encoder.hiden_size is not a key of encoder=bert; did you mean encoder.hidden_size?")
    with pytest.raises(Refused, match="the docs say"):
        check_command("python main.py +encoder.hiden_size=1", "error: something else")
    with pytest.raises(Refused, match="passes the checks"):
        check_command("python main.py encoder=bert", "error: encoder.hiden_size is not a key of encoder=bert")


def test_extraction_joins_continuations_and_skips_comments_and_output(tmp_path, monkeypatch):
    doc = tmp_path / "doc.md"
    doc.write_text("```bash\n# a comment\npython main.py a=1 \\\n    b=2   # why\npip install -e . && bash x.sh\n```\n"
                   "```\n[some output]\n```\n"
                   "```console\n$ python main.py c=3 \\\n  d=4\nerror: no\n$ python main.py e=5\nprinted\n```\n"
                   "```text\npython main.py PATH/TO/X\n```\n", encoding="utf-8")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    got = [(command.text, command.expected_error) for command in commands_in(doc)]
    assert got == [("python main.py a=1 b=2", None), ("pip install -e .", None), ("bash x.sh", None),
                   ("python main.py c=3 d=4", "error: no"), ("python main.py e=5", None)]


# ----------------------------------------------------------------------------------- links

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    anchors, fence = set(), False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line):
            fence = not fence
        elif not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
        anchors.update(re.findall(r'<a (?:id|name)="([^"]+)"', line))
    return anchors


MARKDOWN = [*DOCS, *sorted((ROOT / "experiments").glob("*.md"))]


def broken_links(path: Path) -> list[str]:
    """The relative links of a Markdown file that name no file, or no heading of that file."""
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file) if file else path
        if not resolved.exists():
            broken.append(f"{target}: no {file}")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return broken


@pytest.mark.parametrize("path", MARKDOWN, ids=[str(path.relative_to(ROOT)) for path in MARKDOWN])
def test_every_relative_link_resolves(path):
    assert not broken_links(path), f"{path.relative_to(ROOT)}: " + "; ".join(broken_links(path))


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## What's checked, before any work\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text("[a](other.md#whats-checked-before-any-work) [b](other.md#gone) [c](missing.md) "
                   "[d](#top) [e](https://example.org/x)\n\n# Top\n", encoding="utf-8")
    assert broken_links(doc) == ["other.md#gone: no heading #gone in other.md", "missing.md: no missing.md"]
