"""Command-line interface: ``mslesion <command> ...``.

Each command lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``.  The CLI is thin: it parses arguments, calls the
library, and turns the library's exceptions into one-line messages and exit
codes (2 for bad input or an unwritable output, 1 for anything unexpected).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import sys
from types import FrameType
from typing import Any, Callable, Sequence, Union

from .. import __version__
from ..errors import InputError, ModelError, MslesionError, OutputError, ResourceError

#: commands listed first in `mslesion --help`; any other module of this package
#: with an ``add_parser`` function is found automatically and listed after them.
FIRST_COMMANDS = ["analyze", "evaluate"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() controls exit codes."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mslesion", description="Find and report multiple-sclerosis lesions in MRI.")
    parser.add_argument("--version", action="version", version=f"mslesion {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def command_modules() -> list[str]:
    """Names of the command modules in this package, FIRST_COMMANDS first."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return [n for n in FIRST_COMMANDS if n in found] + [n for n in found if n not in FIRST_COMMANDS]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting."""
    parser = get_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        print(one_line(exc), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose)
    previous = _exit_on_sigterm()
    try:
        return int(args.func(args))
    except (InputError, OutputError, ModelError, ResourceError) as exc:
        print(f"mslesion {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except MslesionError as exc:
        print(f"mslesion {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("mslesion: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"mslesion {args.command}: error: ran out of memory (free memory, or analyse a smaller image)",
              file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:  # a bug: one line for the user, the traceback with -vv
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(f"mslesion {args.command}: internal error: {type(exc).__name__}: {one_line(exc)} "
              "(please report it; run with -vv for details)", file=sys.stderr)
        return EXIT_FAIL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: what :func:`signal.signal` takes and returns
SignalHandler = Union[Callable[[int, FrameType | None], Any], int, signal.Handlers, None]


def _exit_on_sigterm() -> SignalHandler:
    """Turn SIGTERM (kill, batch schedulers) into SystemExit(143), so temp files are cleaned up."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (file names may hold newlines, messages may span lines)."""
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(exc).strip())
    return text or type(exc).__name__


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    # nibabel/pydicom report the header repairs they make, as log records or warnings; our own
    # checks say what matters in one line, so their chatter only shows with -v
    logging.captureWarnings(True)
    for name in ("nibabel", "pydicom", "py.warnings"):
        logging.getLogger(name).setLevel(logging.ERROR if verbosity == 0 else logging.NOTSET)


def entry_point() -> None:  # console script
    raise SystemExit(main())
