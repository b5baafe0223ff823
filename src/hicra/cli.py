"""The `hicra` command: one entry point, one sub-command ("verb") per job.

Each verb lives in its own module, which provides `register(subparsers)`: it adds an argparse parser and
sets `func` (a callable taking the parsed args and returning an exit code). Modules import heavy libraries
(torch, transformers) inside `func`, so `hicra --help` stays fast. A verb is listed here only once it works.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from hicra import __version__
from hicra.errors import InputError

# verb modules, in the order `hicra --help` lists them
VERB_MODULES: list[str] = [
    "hicra.lab.cli",  # lab: the built-in default (`make demo`)
    "hicra.study.cli",  # study
    "hicra.dynamics.cli",  # analyze, convert
    "hicra.mechanistic.cli",  # anchors, graphs
    "hicra.planning.cli",  # grams
    "hicra.integrations.cli",  # train
    "hicra.evaluation.cli",  # eval
]


class OneLineErrors(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (`PROG: error: MESSAGE (see PROG --help)`), exit code 2,
    like every other bad-input error of the CLI; the subcommands' parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="hicra",
        description="Hierarchy-aware RL for LLM reasoning: planning tokens, GRPO/HICRA training with "
        "controls, and training-dynamics analysis.",
    )
    parser.add_argument("--version", action="version", version=f"hicra {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineErrors)
    for module in VERB_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    if not sys.stderr.isatty():
        _quiet_library_bars()
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"hicra {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except (NotADirectoryError, FileExistsError, IsADirectoryError, PermissionError) as exc:
        # a path given on the command line that is a file where a folder must be (or the reverse), or not ours to
        # write: the user's input, so one line and exit 2 like any other, not a traceback
        print(f"hicra {args.verb}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hicra {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader closed the pipe (`hicra analyze ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


def _quiet_library_bars() -> None:
    """No Hugging Face progress bars ("Loading weights", downloads) when stderr is not a terminal, as hicra's own bars
    (tqdm's disable=None): in a log or a pipe they are noise, and before an error they made it more than one line."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is first imported
    if "transformers" in sys.modules:  # imported already (the CLI called in-process): its switch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


if __name__ == "__main__":
    raise SystemExit(main())
