"""`mmdlr --help` and each command's help: every option explained, and no heavy library imported to say so."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from mmdlr.cli.main import build_parser

HEAVY = ("torch", "monai", "sklearn", "radiomics", "pandas", "fastapi")


def parsers(parser: argparse.ArgumentParser, name: str = "mmdlr"):
    """(name, parser) for ``parser`` and every subcommand's parser below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, child in action.choices.items():
                yield from parsers(child, f"{name} {command}")


def test_every_option_and_command_has_help():
    unexplained = []
    for name, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {choice.dest for choice in action._choices_actions if choice.help}
                unexplained += [f"{name} {command}" for command in action.choices if command not in described]
            elif not action.help or action.help == argparse.SUPPRESS:
                unexplained.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert unexplained == []


def test_help_imports_no_heavy_library():
    commands = [[]] + [[name] for name in next(a for a in build_parser()._actions
                                              if isinstance(a, argparse._SubParsersAction)).choices]
    script = f"""
import contextlib, io, json, sys
from mmdlr.cli.main import main
loaded = {{}}
for command in {commands!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(command + ["--help"])
    loaded[" ".join(["mmdlr", *command, "--help"])] = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps(loaded))
"""
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(answer.stdout)
    assert len(loaded) == len(commands)
    assert {command: modules for command, modules in loaded.items() if modules} == {}
