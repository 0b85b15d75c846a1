"""`prism-testbed`: the testbed's pieces from the command line.

Errors the user can fix are one line (the input and what is wrong with
it); --verbose shows the traceback as well. Each module here adds one
group of subcommands: build (kernels, images, one-VM runs), results
(experiment, report), cache, doctor, and up (deployments that stay up: up, status, exec, shell, down).
"""

from __future__ import annotations

import argparse
import sys
import traceback

from rich.markup import escape

from ..core import paths
from ..core.errors import TestbedError
from ..core.progress import console
from . import build, cache, doctor, results, up


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="prism-testbed", description=__doc__.splitlines()[0])
    top.add_argument("--verbose", action="store_true", help="show tracebacks")
    sub = top.add_subparsers(dest="command", required=True)
    for module in (build, cache, doctor, results, up):
        module.add_parsers(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "guest_command", None) and args.guest_command[:1] == ["--"]:
        args.guest_command = args.guest_command[1:]
    try:
        paths.check_data_root()
        return args.func(args)
    except TestbedError as exc:
        if args.verbose:
            traceback.print_exc()
        # one line however long; the message's own brackets are text, not markup
        console.print(f"[red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
