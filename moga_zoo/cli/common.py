"""What every command line shares: expected errors become one clear line and exit code 2."""
from __future__ import annotations

import sys

from ..data.datasets import DatasetError
from ..export.common import ExportError
from ..latency.table import TableError
from ..specs import SpecError
from ..search.nsga import SearchError
from ..train.loop import TrainError
from ..weights import WeightsError

EXPECTED = (SpecError, WeightsError, DatasetError, ExportError, TableError, TrainError, SearchError,
            FileNotFoundError, ValueError)


def run(parser, argv=None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except EXPECTED as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
