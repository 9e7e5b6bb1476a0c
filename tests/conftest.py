"""Shared fixtures: S3 servers (moto, SeaweedFS), an isolated AWS environment, fresh buckets.

- moto_server: moto in-process on 127.0.0.1; accepts any credentials. Yields the endpoint URL.
- moto_s3: the same as an S3Server (endpoint + the dummy credentials moto takes).
- seaweedfs: `weed mini` with real SigV4 authentication. Yields an S3Server whose
  `credentials` are an admin key pair and whose `identities` add "read-only" (Read, List)
  and "no-access" (no action allowed) key pairs, for access-denied tests.
- aws_env: clears every AWS_* variable and the user's AWS config files for the test; call it
  to set endpoint, credentials and region the way a trainer pod gets them.
- make_bucket: creates a fresh, uniquely named bucket on a server and returns its name.
- k8s, k8s_env, k8s_namespace, fake_node: the emulated Kubernetes cluster (tests/cluster).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import s3servers
from tests.cluster.fixtures import fake_node, k8s, k8s_env, k8s_namespace  # noqa: F401


@pytest.fixture(autouse=True)
def float32_policy_after_each_test() -> Iterator[None]:
    """A training run sets Keras' global precision policy (mixedPrecision: auto takes bfloat16
    on a CPU that has it): the next test starts from float32 again."""
    yield
    keras = sys.modules.get("keras")  # never imported for it: operator tests stay light
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


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


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server with SigV4 authentication (SeaweedFS `weed mini`)."""
    root = tmp_path_factory.mktemp("seaweedfs")
    suffix = uuid.uuid4().hex[:10]
    admin = S3Credentials(f"admin{suffix}", f"admin-secret-{uuid.uuid4().hex}")
    identities = {
        "read-only": S3Credentials(f"reader{suffix}", f"reader-secret-{uuid.uuid4().hex}"),
        "no-access": S3Credentials(f"nobody{suffix}", f"nobody-secret-{uuid.uuid4().hex}"),
    }
    actions = {"admin": s3servers.ADMIN_ACTIONS, "read-only": ["Read", "List"], "no-access": []}
    config = root / "s3.json"
    s3servers.write_s3_config(
        config,
        [
            (name, c.access_key, c.secret_key, actions[name])
            for name, c in [("admin", admin), *identities.items()]
        ],
    )
    try:
        with s3servers.weed_mini(root, config) as (proc, endpoint):
            server = S3Server(endpoint, admin, identities=identities)
            s3servers.wait_for_s3(server.client(), proc, root / "weed.log")
            yield server
    except s3servers.WeedMiniError as exc:
        pytest.fail(str(exc))


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
