"""The pod's termination message: the operator reads how a run ended from it.

Kept free of heavy imports: the CLI writes it for errors before TensorFlow is loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TERMINATION_MESSAGE_ENV = "ICT_TERMINATION_MESSAGE_PATH"
TERMINATION_MESSAGE_LIMIT = 4000  # Kubernetes keeps 4096 bytes


def write_termination_message(summary: dict) -> None:
    """The Pod's termination message (the operator reads it); Kubernetes keeps 4 KB of it."""
    path = os.environ.get(TERMINATION_MESSAGE_ENV)
    if not path:
        return
    message = dict(summary)
    for drop in ("best", "final", "artifacts"):
        if len(json.dumps(message)) < TERMINATION_MESSAGE_LIMIT:
            break
        message.pop(drop, None)
    Path(path).write_text(json.dumps(message)[:TERMINATION_MESSAGE_LIMIT])
