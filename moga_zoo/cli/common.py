"""What every command line shares: expected errors become one clear line and exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from ..data.datasets import DatasetError
from ..export.common import ExportError
from ..latency.table import TableError
from ..specs import SpecError
from ..search.nsga import SearchError
from ..train.loop import Interrupted, TrainError
from ..weights import WeightsError

EXPECTED = (SpecError, WeightsError, DatasetError, ExportError, TableError, TrainError, SearchError,
            FileNotFoundError, ValueError)


def _quiet_stdout():
    """After a closed pipe (``moga-zoo info X | head``) Python would still flush stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run(parser, argv=None) -> int:
    """Parse, run, and turn every failure into one line and an exit status: 2 for bad input
    (the message says what to fix), 70 for a bug, 130 for Ctrl-C, 141 for a closed pipe.
    ``--debug`` (anywhere) or ``MOGA_ZOO_DEBUG=1`` shows tracebacks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MOGA_ZOO_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser.epilog = ((parser.epilog or "") + "\n--debug (or MOGA_ZOO_DEBUG=1) shows tracebacks.").strip()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except EXPECTED as e:
        if debug:
            traceback.print_exc()
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # a long run that saved its state
        print(f"{parser.prog}: {e}. Continue with the same command and --resume", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug: say so, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        print(f"{parser.prog}: internal error ({type(e).__name__}: {e}). This is a bug in moga-zoo; rerun "
              f"with --debug (or MOGA_ZOO_DEBUG=1) for the traceback and report it", file=sys.stderr)
        return 70


def _number(cast, text: str, ok, want: str):
    try:
        v = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if cast is int else 'a number'}, "
                                         f"got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
    return v


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a batch of 0 would spin forever)."""
    return _number(int, text, lambda v: v >= 1, ">= 1")


def nonneg_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, ">= 0")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: 0 < v < float("inf"), "a finite number > 0")
