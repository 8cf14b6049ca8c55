"""Native libraries write log lines straight to file descriptor 2: TFLite's runtime ("INFO: Created
TensorFlow Lite XNNPACK delegate for CPU.") and absl-based TensorFlow builds on import ("I0000 ...
oneDNN custom operations are on", preceded by absl's "All log messages before
absl::InitializeLog()" warning), past ``sys.stderr`` and past ``TF_CPP_MIN_LOG_LEVEL``. Capture
fd 2 around such calls and pass through everything except that INFO chatter (warnings and errors
still reach the user)."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

_CHATTER = re.compile(r"^(INFO: |I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\))")


@contextlib.contextmanager
def quiet_native_info():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [ln for ln in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not _CHATTER.match(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
