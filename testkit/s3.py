"""A real S3-compatible server on 127.0.0.1 for the tests: moto's standalone server in a subprocess (`moto_s3`).

It needs no network: moto keeps the buckets in its own memory. The tests' S3 store (chat/file_store_s3.py) talks
to it over HTTP as it would to AWS; `S3Server.env` is what a chat server process needs to use it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .servers import free_port

# moto checks no signature: any key pair is accepted, but botocore signs, so it needs one
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # botocore never asks the (absent) instance metadata service
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    prefix: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """CHAT_FILES_URL for this server's bucket and prefix."""
        return f"s3://{self.bucket}/{self.prefix}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def moto_s3(
    workdir: Path, bucket: str = "chat-files", prefix: str = "files", timeout: float = 30
) -> Iterator[S3Server]:
    """moto's S3 server on a free port of 127.0.0.1, with `bucket` created; stopped when the block ends.

    env: CHAT_FILES_URL, CHAT_S3_ENDPOINT_URL and the AWS_* credentials and region, to pass to a chat server.
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = Path(workdir) / f"moto-{port}.log"
    # no AWS_* of the machine reaches it, and it never looks for anything outside this machine
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CHAT_"))}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, **CREDENTIALS},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, endpoint, log_path, timeout)
        httpx.put(f"{endpoint}/{bucket}", timeout=10).raise_for_status()  # CreateBucket (moto checks no signature)
        yield S3Server(
            endpoint=endpoint,
            bucket=bucket,
            prefix=prefix,
            log_path=log_path,
            env={"CHAT_FILES_URL": f"s3://{bucket}/{prefix}", "CHAT_S3_ENDPOINT_URL": endpoint, **CREDENTIALS},
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, endpoint: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto's server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(endpoint + "/", timeout=2).status_code == 200:  # ListBuckets
                return
        time.sleep(0.1)
    raise TimeoutError(f"moto's server did not answer within {timeout}s:\n{log_path.read_text(errors='replace')}")
