"""What ict prints on stderr: its own log lines. The libraries' chatter only with -v.

TensorFlow's C++ side writes absl's "All log messages before absl::InitializeLog()" warning and
its oneDNN notice straight to file descriptor 2 while it is imported, whatever
TF_CPP_MIN_LOG_LEVEL says, so the import runs with that descriptor pointed at /dev/null.
matplotlib logs "generated new fontManager" when it builds its font cache; its cache lives
under ict's cache folder so that it is built once, and its logger is not ict's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# Loggers whose INFO lines are ict's own; every other logger shows warnings only with -v.
OWN_LOGGERS = ("ict", "ict_trainer", "ict_api")


def cache_root() -> Path:
    """ict's cache folder: $ICT_CACHE_DIR, else ~/.cache/ict."""
    return Path(os.environ.get("ICT_CACHE_DIR") or Path.home() / ".cache" / "ict")


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Points file descriptor 2 at /dev/null (C++ writes too), then restores it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class OwnRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] in OWN_LOGGERS


def configure(verbose: bool, needs_tensorflow: bool) -> None:
    """Logging and the libraries' environment; before TensorFlow or matplotlib is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    os.environ.setdefault("MPLCONFIGDIR", str(cache_root() / "matplotlib"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ict: %(message)s"))
    if not verbose:
        handler.addFilter(OwnRecords())
        logging.captureWarnings(True)  # Python warnings of the libraries: through the filter
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if needs_tensorflow and not verbose:
        with stderr_silenced():
            import tensorflow  # noqa: F401
