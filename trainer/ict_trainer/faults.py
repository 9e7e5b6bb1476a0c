"""Kill points: where tests make the trainer die as a preempted pod would, without sleeps.

ICT_KILL_AT=POINT[:SIGNAL] (e.g. `epoch-end:train:2`, `publish:before-metrics:TERM`) makes the
process send itself SIGNAL (KILL by default) when it reaches POINT. Points: `epoch-end:STAGE:N`
(epoch N of a stage committed to checkpoints), `publish:old-metrics-removed`,
`publish:before-metrics`, `publish:before-clear` (artifacts complete, checkpoints not cleared).
In-process tests replace `die` with a function that raises. Unset (always, outside tests), a kill
point costs one lookup.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "ICT_KILL_AT"


def die(signum: int) -> None:
    os.kill(os.getpid(), signum)


def kill_point(point: str) -> None:
    wanted = os.environ.get(KILL_AT_ENV, "")
    name, signal_name = wanted, "KILL"
    if wanted.endswith((":KILL", ":TERM")):
        name, signal_name = wanted.rsplit(":", 1)
    if wanted and name == point:
        die(getattr(signal, "SIG" + signal_name))
