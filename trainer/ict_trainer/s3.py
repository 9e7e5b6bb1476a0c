"""S3Store: the Store interface over an S3-compatible bucket (AWS, MinIO, Ceph, SeaweedFS).

Retries of transient failures (5xx, throttling, connection resets) are botocore's standard retry
mode and s3transfer's for uploads; the one loop here fetches again a download whose body was cut
short (the errors s3transfer retries), which botocore's retries do not cover.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError
from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS, ChunksizeAdjuster

from ict_api.spec import StorageSpec
from ict_trainer.errors import StorageError
from ict_trainer.storage import (
    DownloadJob,
    ObjectInfo,
    Store,
    check_key,
    content_etag,
    join_key,
    temp_path,
)

log = logging.getLogger(__name__)


def upload_etag(path: Path, config: TransferConfig) -> str:
    """The ETag S3 gives the object that uploading path with config makes: the content's md5
    for a single PUT; for a multipart upload, the md5 of the parts' md5s and '-<parts>', the
    parts cut as s3transfer cuts them. (An object written another way, or encrypted with
    SSE-KMS, has another ETag: it is merely uploaded again.)"""
    size = path.stat().st_size
    if size < config.multipart_threshold:
        return content_etag(path)
    chunk = ChunksizeAdjuster().adjust_chunksize(config.multipart_chunksize, size)
    with open(path, "rb") as handle:
        parts = [_md5(part).digest() for part in iter(lambda: handle.read(chunk), b"")]
    return f"{_md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def _md5(data: bytes):
    return hashlib.md5(data, usedforsecurity=False)


# Tries of one GET whose body is cut short (s3transfer's default for downloads).
_BODY_ATTEMPTS = 5
_CHUNK = 1 << 20
_CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to a key pair of that "
    "server; in a cluster, name a Secret holding them in spec.storage.credentialsSecret"
)
_PERMISSION = {
    "listing": "s3:ListBucket",
    "reading": "s3:GetObject",
    "writing": "s3:PutObject",
    "deleting": "s3:ListBucket and s3:DeleteObject",
}
_MISSING = {"NoSuchKey", "NotFound", "404"}
_DENIED = {"AccessDenied", "Forbidden", "403", "AllAccessDisabled", "AccountProblem"}
_EXPIRED = {"ExpiredToken", "InvalidToken", "TokenRefreshRequired", "RequestExpired"}
_WRONG_REGION = {
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "301",
    "IllegalLocationConstraintException",
}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split s3://bucket/prefix into (bucket, prefix without surrounding slashes)."""
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"S3 location {uri!r} names no bucket; write it as s3://bucket/prefix")
    return bucket, check_key(prefix.rstrip("/"), uri, allow_empty=True)


class S3Store(Store):
    """Objects below s3://bucket/prefix. Credentials come from boto3's usual lookup and are
    held only inside the boto3 client.

    max_attempts is botocore's retries "max_attempts": retries after the first try.
    max_concurrency bounds the parallel transfers of put_dir and sync_down.
    """

    def __init__(
        self,
        uri: str,
        storage: StorageSpec | None = None,
        *,
        max_concurrency: int = 16,
        max_attempts: int = 8,
    ):
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        storage = storage or StorageSpec()
        self.max_concurrency = max_concurrency
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            s3={"addressing_style": storage.addressing_style.value},
            # max_concurrency requests run at once; each needs a pooled connection.
            max_pool_connections=max_concurrency + 4,
            # botocore >= 1.36 sends CRC checksums by default, which several S3-compatible
            # servers reject or mishandle; ask for them only where S3 requires one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self.client = boto3.session.Session().client(
                "s3",
                endpoint_url=storage.endpoint or None,
                region_name=storage.region or None,
                config=config,
            )
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(
                f"cannot set up an S3 client for {self.uri!r} ({type(exc).__name__}: {exc}); "
                "check spec.storage.endpoint, spec.storage.region and the AWS_* variables"
            ) from exc
        self.endpoint = self.client.meta.endpoint_url

    def _join(self, key: str) -> str:
        return f"{self.uri}/{key}" if key else self.uri

    def _full(self, key: str) -> str:
        return join_key(self.prefix, key)

    def _transfer_config(self) -> TransferConfig:
        return TransferConfig(
            max_concurrency=self.max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )

    # -- errors -------------------------------------------------------------------------------

    def _explain(self, exc: ClientError, full_key: str | None) -> ClientError:
        """HEAD answers carry no body, so their 403 and 404 hide the reason (missing key or
        bucket, unknown key id, bad secret, denied); a GET of the same key tells it."""
        code = exc.response.get("Error", {}).get("Code", "")
        if full_key is None or exc.operation_name != "HeadObject" or code not in ("403", "404"):
            return exc
        try:
            self.client.get_object(Bucket=self.bucket, Key=full_key)["Body"].close()
        except ClientError as better:
            return better
        except BotoCoreError:
            pass
        return exc

    def _error(self, exc: BaseException, action: str, key: str = "") -> StorageError:
        """One StorageError naming the location and the fix. Messages never include the
        credentials: botocore's own texts name neither the key id nor the secret."""
        uri = self._join(key)
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
            exc = exc.last_exception
        if isinstance(exc, ClientError):
            exc = self._explain(exc, self._full(key) if key else None)
            return self._client_error(exc, action, uri)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"no complete S3 credentials found for {uri!r}: {_CREDENTIALS_FIX}")
        if isinstance(exc, CredentialRetrievalError):
            return StorageError(
                f"the S3 credentials for {uri!r} could not be fetched from "
                f"{exc.kwargs.get('provider', 'their provider')!r}: {_CREDENTIALS_FIX}"
            )
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            return StorageError(
                f"cannot reach the S3 endpoint {self.endpoint!r} while {action} {uri!r} "
                f"({type(exc).__name__}); check spec.storage.endpoint or AWS_ENDPOINT_URL, "
                "and that the server is up and reachable from here"
            )
        if isinstance(exc, OSError):
            return StorageError(
                f"local file error while {action} {uri!r}: {exc.strerror or exc} "
                f"({getattr(exc, 'filename', None)!r})"
            )
        return StorageError(f"S3 failure while {action} {uri!r}: {type(exc).__name__}: {exc}")

    def _client_error(self, exc: ClientError, action: str, uri: str) -> StorageError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return StorageError(
                f"S3 bucket {self.bucket!r} does not exist (while {action} {uri!r}); "
                "create the bucket or correct the URI"
            )
        if code in _MISSING:
            return StorageError(
                f"{uri!r} does not exist; check the key and that the object was uploaded"
            )
        if code == "InvalidAccessKeyId":
            return StorageError(
                f"the S3 server at {self.endpoint!r} does not know the access key id used for "
                f"{uri!r} (InvalidAccessKeyId); {_CREDENTIALS_FIX}"
            )
        if code == "SignatureDoesNotMatch":
            return StorageError(
                f"the S3 server at {self.endpoint!r} rejected the signature of a request for "
                f"{uri!r} (SignatureDoesNotMatch): the secret access key does not belong to the "
                f"access key id; {_CREDENTIALS_FIX}"
            )
        if code in _EXPIRED:
            return StorageError(
                f"the S3 credentials used for {uri!r} have expired ({code}); {_CREDENTIALS_FIX}"
            )
        if code in _DENIED:
            return StorageError(
                f"access denied while {action} {uri!r} ({code}); give the credentials "
                f"{_PERMISSION.get(action, 'access')} on it, or use credentials that have it"
            )
        if code in _WRONG_REGION:
            return StorageError(
                f"bucket {self.bucket!r} is in another region than the one used for {uri!r} "
                f"({code}); set spec.storage.region or AWS_REGION to the bucket's region"
            )
        if code == "InvalidBucketName":
            return StorageError(
                f"{self.bucket!r} is not a valid bucket name (in {uri!r}); use 3-63 lowercase "
                "letters, digits, dots and hyphens"
            )
        return StorageError(
            f"S3 error {code or 'unknown'} (HTTP {status}) while {action} {uri!r}: "
            f"{error.get('Message', '')}"
        )

    # -- Store --------------------------------------------------------------------------------

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = self._prefix(prefix)
        folder = self._full(prefix)
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{folder}/" if folder else ""
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    full = item["Key"]
                    if full.endswith("/"):
                        continue  # a "folder" marker made by consoles, not an object
                    out.append(
                        ObjectInfo(
                            key=full[len(self.prefix) + 1 :] if self.prefix else full,
                            size=int(item["Size"]),
                            etag=item.get("ETag", "").strip('"'),
                        )
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "listing", prefix) from exc
        return sorted(out, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        key = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError as exc:
            explained = self._explain(exc, self._full(key))
            if explained.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise self._client_error(explained, "reading", self._join(key)) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "reading", key) from exc

    def get_bytes(self, key: str) -> bytes:
        key = self._key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            with response["Body"] as body:
                return body.read()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "reading", key) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        key = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "writing", key) from exc

    def delete(self, key: str) -> None:
        key = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "deleting", key) from exc

    def delete_prefix(self, prefix: str) -> None:
        prefix = self._prefix(prefix)
        folder = self._full(prefix)
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{folder}/" if folder else ""
            )
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if not keys:
                    continue
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                for failed in response.get("Errors", ()):
                    raise ClientError({"Error": failed}, "DeleteObjects")
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "deleting", prefix) from exc

    def _download_many(self, jobs: list[DownloadJob]) -> tuple[list[DownloadJob], Exception | None]:
        # One GetObject per object from a thread pool: 1.5x the objects/s of s3transfer's
        # manager for dataset-sized files (bench/RESULTS.md), whose per-object futures and IO
        # queue cost more than the transfer. Requests keep botocore's retries; a body cut short
        # is fetched again, as s3transfer does.
        try:
            for _, _, dest in jobs:
                dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return [], StorageError(f"cannot create {str(exc.filename)!r}: {exc.strerror}")
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(jobs)))) as pool:
            errors = list(pool.map(self._download_one, jobs))
        done = [job for job, error in zip(jobs, errors, strict=True) if error is None]
        return done, next((error for error in errors if error is not None), None)

    def _download_one(self, job: DownloadJob) -> StorageError | None:
        """Fetches one object into a hidden temporary file, renamed into place once its size is
        the listed one; returns the failure rather than raising it."""
        key, size, dest = job
        tmp = temp_path(dest)
        try:
            for attempt in range(1, _BODY_ATTEMPTS + 1):
                try:
                    body = self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
                    try:
                        # StreamingBody's own reads: they raise on a body shorter than announced.
                        with open(tmp, "wb") as out:
                            for chunk in body.iter_chunks(_CHUNK):
                                out.write(chunk)
                    finally:
                        body.close()
                    break
                except S3_RETRYABLE_DOWNLOAD_ERRORS:
                    if attempt == _BODY_ATTEMPTS:
                        raise
            written = tmp.stat().st_size
            if size is not None and written != size:
                raise StorageError(
                    f"{self._join(key)!r} came back with {written} bytes where its listing says "
                    f"{size}: it changed while being read; run again"
                )
            os.replace(tmp, dest)
            return None
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            return self._error(exc, "reading", key)

    def _unchanged(self, jobs: list[tuple[Path, str]], prefix: str) -> set[str]:
        """One listing of prefix; a file whose object has its size and ETag is not sent again.
        Credentials that may write but not list merely upload everything."""
        try:
            listed = {o.key: o for o in self.list(prefix)}
        except StorageError as exc:
            log.debug("uploading every file: %s", exc)
            return set()
        config = self._transfer_config()
        return {
            key
            for path, key in jobs
            if (found := listed.get(key)) is not None
            and found.size == path.stat().st_size
            and found.etag == upload_etag(path, config)
        }

    def _upload_many(self, jobs: list[tuple[Path, str]]) -> None:
        if not jobs:
            return
        first_error: StorageError | None = None
        for path, key in jobs:
            if not path.is_file():
                raise StorageError(
                    f"cannot upload {str(path)!r} to {self._join(key)!r}: no such file"
                )
        with create_transfer_manager(self.client, self._transfer_config()) as manager:
            pending = []
            for path, key in jobs:
                pending.append((key, manager.upload(str(path), self.bucket, self._full(key))))
            for key, future in pending:
                try:
                    future.result()
                except Exception as exc:
                    if first_error is None:
                        first_error = self._error(exc, "writing", key)
        if first_error is not None:
            raise first_error
