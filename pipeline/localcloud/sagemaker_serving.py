"""Local model servers for SageMaker endpoints: one subprocess per distinct model.

A server downloads the model's ModelDataUrl (model.tar.gz) and its code (the Environment's
SAGEMAKER_SUBMIT_DIRECTORY tarball, else model.tar.gz's code/ dir, as the scikit-learn
container does), then runs sagemaker_serve.py, which loads SAGEMAKER_PROGRAM's model_fn and
answers /ping and /invocations on a free 127.0.0.1 port. Endpoints bind to servers by key, so
an endpoint and its update to the same model share one server, and a server nobody is bound
to stops. The server's log is <server root>/server.log.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from pipeline.localcloud import sagemaker_aws

SERVE_SCRIPT = Path(__file__).with_name("sagemaker_serve.py")
WORK_ROOT = Path(tempfile.gettempdir()) / "mlops-localcloud-sagemaker" / "serving"
# SageMaker waits minutes for the first ping; a local model that needs more than this is broken.
STARTUP_TIMEOUT_SECONDS = 60
# InvokeEndpoint's own limit: the container must answer within 60 s.
INVOKE_TIMEOUT_SECONDS = 60
READY_POLL_SECONDS = 0.02


class ModelServerError(Exception):
    """The model cannot be served: download, import, model_fn or the health check failed."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model server runs, from a SageMaker Model's primary container."""

    model_name: str
    model_data_url: str | None
    submit_directory: str | None
    program: str
    environment: tuple[tuple[str, str], ...]

    @property
    def key(self) -> tuple:
        # The model's name is left out: two models with the same artifacts serve identically.
        return (self.model_data_url, self.submit_directory, self.program, self.environment)

    @classmethod
    def from_container(cls, model_name: str, container: Mapping) -> ModelSpec:
        env = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        program = env.get("SAGEMAKER_PROGRAM", "")
        if not program:
            raise ModelServerError(
                f"model {model_name!r} has no SAGEMAKER_PROGRAM in its container Environment; "
                "set it to the script that defines model_fn (e.g. entry.py)"
            )
        return cls(
            model_name=model_name,
            model_data_url=container.get("ModelDataUrl"),
            submit_directory=env.get("SAGEMAKER_SUBMIT_DIRECTORY"),
            program=program,
            environment=tuple(sorted(env.items())),
        )


@dataclass(frozen=True)
class Invocation:
    status: int
    body: bytes
    content_type: str


class ModelServer:
    def __init__(self, spec: ModelSpec, region: str):
        self.spec = spec
        self.region = region
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def log_path(self) -> Path | None:
        return self.root / "server.log" if self.root else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None and self.port is not None

    def log_lines(self) -> list[str]:
        if not self.log_path or not self.log_path.is_file():
            return []
        return self.log_path.read_text(errors="replace").splitlines()

    def _stage(self, model_dir: Path, code_dir: Path) -> Path:
        s3 = sagemaker_aws.client("s3", self.region)
        url = self.spec.model_data_url
        if url:
            try:
                sagemaker_aws.unpack_tar_gz(sagemaker_aws.read_object(s3, url), model_dir)
            except (ClientError, sagemaker_aws.S3UriError) as exc:
                raise ModelServerError(
                    f"Failed to download model data from {url} ({exc}). Please ensure that there "
                    "is an object located at the URL and that the role passed to CreateModel has "
                    "permissions to download the model."
                ) from None
            except Exception as exc:  # tarfile errors: the artifact is not a tar.gz
                raise ModelServerError(f"model data {url} is not a tar.gz: {exc}") from None
        submit = self.spec.submit_directory
        if submit and submit.startswith("s3://"):
            try:
                sagemaker_aws.unpack_tar_gz(sagemaker_aws.read_object(s3, submit), code_dir)
            except ClientError as exc:
                raise ModelServerError(
                    f"Failed to download the code from SAGEMAKER_SUBMIT_DIRECTORY {submit} ({exc})"
                ) from None
            source = code_dir
        else:
            # Without an S3 submit directory the container looks in model.tar.gz's code/.
            source = model_dir / "code"
        if not (source / self.spec.program).is_file():
            found = sorted(p.name for p in source.iterdir()) if source.is_dir() else []
            raise ModelServerError(
                f"SAGEMAKER_PROGRAM {self.spec.program!r} is not in the model's code "
                f"({submit or 'model.tar.gz code/'} holds {found})"
            )
        return source

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        WORK_ROOT.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.spec.model_name}-", dir=WORK_ROOT))
        model_dir, code_dir = self.root / "model", self.root / "code"
        model_dir.mkdir()
        source = self._stage(model_dir, code_dir)
        ready = self.root / "ready.json"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **sagemaker_aws.client_env(self.region),
            **dict(self.spec.environment),
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BASE_DIR": str(self.root),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-E",
                    "-u",
                    str(SERVE_SCRIPT),
                    str(source),
                    str(model_dir),
                    self.spec.program,
                    str(ready),
                ],
                cwd=source,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not ready.is_file():
            if self.process.poll() is not None:
                raise ModelServerError(self._why_not_started())
            if time.monotonic() > deadline:
                self.stop()
                raise ModelServerError(
                    f"the model did not load within {timeout:.0f}s; see {self.log_path}"
                )
            time.sleep(READY_POLL_SECONDS)
        self.port = json.loads(ready.read_text())["port"]
        status = self._ping()
        if status != 200:
            self.stop()
            raise ModelServerError(f"/ping answered {status}; see {self.log_path}")

    def _why_not_started(self) -> str:
        last = next((line for line in reversed(self.log_lines()) if line.strip()), "")
        code = self.process.returncode if self.process else None
        return f"{last or f'the model server exited with code {code}'} (log: {self.log_path})"

    def _ping(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().status
        except OSError:
            return 0
        finally:
            conn.close()

    def invoke(
        self, body: bytes, content_type: str | None, accept: str | None, attributes: str | None
    ) -> Invocation:
        headers = {"Content-Type": content_type or "application/json"}
        if accept:
            headers["Accept"] = accept
        if attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=INVOKE_TIMEOUT_SECONDS)
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            return Invocation(
                response.status,
                response.read(),
                response.getheader("Content-Type", "application/octet-stream"),
            )
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.port = None


# --- which endpoint uses which server -----------------------------------------------------------

_lock = threading.Lock()
_servers: dict[tuple, ModelServer] = {}
_bindings: dict[tuple, tuple] = {}  # (account, region, endpoint name) -> ModelSpec.key
_all: list[ModelServer] = []  # every server started, for shutdown() to clean up


def acquire(spec: ModelSpec, region: str) -> ModelServer:
    """A running server for `spec`: the one already up, or a new one (ModelServerError if not)."""
    with _lock:
        existing = _servers.get(spec.key)
    if existing and existing.running:
        return existing
    server = ModelServer(spec, region)
    with _lock:
        _all.append(server)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    with _lock:
        existing = _servers.get(spec.key)
        if not (existing and existing.running):
            _servers[spec.key] = server
            return server
    server.stop()  # another thread started the same model first; use theirs
    return existing


def _release_unbound(key: tuple) -> ModelServer | None:
    """Under _lock: forget the server for `key` if no endpoint uses it; returns it to stop."""
    if key in _bindings.values():
        return None
    return _servers.pop(key, None)


def bind(endpoint: tuple, server: ModelServer) -> None:
    """Route `endpoint` to `server`; the server it used before stops if nothing else uses it."""
    with _lock:
        old = _bindings.get(endpoint)
        _bindings[endpoint] = server.spec.key
        stale = _release_unbound(old) if old and old != server.spec.key else None
    if stale:
        stale.stop()


def unbind(endpoint: tuple) -> None:
    with _lock:
        old = _bindings.pop(endpoint, None)
        stale = _release_unbound(old) if old else None
    if stale:
        stale.stop()


def release_if_unused(server: ModelServer) -> None:
    with _lock:
        stale = (
            _release_unbound(server.spec.key) if _servers.get(server.spec.key) is server else None
        )
    if stale:
        stale.stop()


def bound(endpoint: tuple) -> ModelServer | None:
    with _lock:
        key = _bindings.get(endpoint)
        return _servers.get(key) if key else None


def shutdown() -> None:
    """Stop every model server and remove its files."""
    with _lock:
        servers = list(_all)
        _all.clear()
        _servers.clear()
        _bindings.clear()
    for server in servers:
        server.stop()
        if server.root:
            with contextlib.suppress(OSError):
                shutil.rmtree(server.root)
