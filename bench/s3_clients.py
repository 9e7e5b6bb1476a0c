"""Ways to download every object below a bucket prefix, each timed into an empty folder.

bench/s3_data.py runs them one after the other against the same SeaweedFS, so that the trainer's
own path (S3Store.sync_down) is compared with the best other clients in one run. Only the
trainer's path and the boto3/s3transfer ones keep botocore's retries; the presigned-URL one is
the HTTP ceiling of this machine (signing done up front, no retries), not a candidate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

Objects = list[tuple[str, int]]  # (full key, size)


def _client(pool: int):
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 8},
        s3={"addressing_style": "path"},
        max_pool_connections=pool + 4,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", config=config)


def _dest(folder: Path, key: str) -> Path:
    path = folder / key
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def s3transfer_classic(threads: int) -> Callable[[str, Objects, Path], None]:
    def run(bucket: str, objects: Objects, folder: Path) -> None:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        client = _client(threads)
        config = TransferConfig(
            max_concurrency=threads, use_threads=True, preferred_transfer_client="classic"
        )
        with create_transfer_manager(client, config) as manager:
            futures = [manager.download(bucket, key, str(_dest(folder, key))) for key, _ in objects]
        for future in futures:
            future.result()

    return run


def s3transfer_crt(bucket: str, objects: Objects, folder: Path) -> None:
    """s3transfer's CRT manager (awscrt: signing and HTTP in C threads, the CRT's retries)."""
    from boto3.crt import create_crt_transfer_manager
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(preferred_transfer_client="crt")
    manager = create_crt_transfer_manager(_client(16), config)
    if manager is None:
        raise RuntimeError("boto3 would not create a CRT transfer manager here")
    with manager:
        futures = [manager.download(bucket, key, str(_dest(folder, key))) for key, _ in objects]
    for future in futures:
        future.result()


def get_object_threads(threads: int) -> Callable[[str, Objects, Path], None]:
    """One client.get_object per object in a thread pool (botocore's retries for the request;
    a body cut short would need a retry of our own)."""

    def run(bucket: str, objects: Objects, folder: Path) -> None:
        client = _client(threads)

        def one(item: tuple[str, int]) -> None:
            key, _ = item
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            with body, open(_dest(folder, key), "wb") as out:
                shutil.copyfileobj(body, out, 1 << 20)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, objects))

    return run


def presigned_urllib3(threads: int) -> Callable[[str, Objects, Path], None]:
    """The HTTP ceiling: URLs signed before the clock starts would be fairer, but signing is
    part of any real client's cost, so it is counted."""

    def run(bucket: str, objects: Objects, folder: Path) -> None:
        import urllib3

        client = _client(threads)
        http = urllib3.PoolManager(maxsize=threads)

        def one(item: tuple[str, int]) -> None:
            key, _ = item
            url = client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
            )
            response = http.request("GET", url, preload_content=True)
            if response.status != 200:
                raise RuntimeError(f"GET {key!r}: HTTP {response.status}")
            _dest(folder, key).write_bytes(response.data)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, objects))

    return run


def aws_cli_sync(bucket: str, prefix: str, folder: Path, threads: int) -> None:
    """`aws s3 sync` (AWS CLI v1 on botocore and s3transfer), max_concurrent_requests set."""
    config = folder.parent / f"{folder.name}.aws-config"
    config.write_text(f"[default]\ns3 =\n  max_concurrent_requests = {threads}\n")
    env = {**os.environ, "AWS_CONFIG_FILE": str(config)}
    subprocess.run(
        ["aws", "s3", "sync", "--quiet", f"s3://{bucket}/{prefix}", str(folder)],
        check=True,
        env=env,
    )


def timed(run: Callable[[], None]) -> float:
    started = time.monotonic()
    run()
    return time.monotonic() - started


def compare(
    bucket: str, prefix: str, objects: Objects, scratch: Path, trainer: Callable[[Path], None]
) -> dict[str, dict]:
    """Seconds and objects/s of each client for the same objects, each into an empty folder."""
    count, nbytes = len(objects), sum(size for _, size in objects)
    clients: dict[str, Callable[[Path], None]] = {"trainer S3Store.sync_down": trainer}
    for threads in (16, 64):
        clients[f"s3transfer classic, {threads} threads"] = lambda f, t=threads: s3transfer_classic(
            t
        )(bucket, objects, f)
    for threads in (16, 32):
        clients[f"boto3 get_object, {threads} threads"] = lambda f, t=threads: get_object_threads(
            t
        )(bucket, objects, f)
    try:
        import awscrt  # noqa: F401

        clients["s3transfer CRT (awscrt)"] = lambda f: s3transfer_crt(bucket, objects, f)
    except ImportError:
        pass
    if shutil.which("aws"):
        clients["aws s3 sync, 32 requests"] = lambda f: aws_cli_sync(bucket, prefix, f, 32)
    clients["presigned GET, urllib3, 16 threads (ceiling)"] = lambda f: presigned_urllib3(16)(
        bucket, objects, f
    )
    out: dict[str, dict] = {}
    for index, (name, run) in enumerate(clients.items()):
        folder = scratch / f"client-{index}"
        try:
            seconds = timed(lambda r=run, f=folder: r(f))
            got = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
            out[name] = {
                "seconds": round(seconds, 2),
                "objectsPerSecond": round(count / seconds, 1),
                "megabytesPerSecond": round(nbytes / 1e6 / seconds, 2),
                "filesWritten": got,
            }
        except Exception as exc:  # one client's failure is a figure too
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print("client", name, out[name], flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    return out
