"""Lambda gap: moto runs function code only in Docker; here it runs in local execution environments.

The deployed zip is unpacked once per content hash. Each environment is a Python
process (lambda_entry.py) with the function's environment variables and
AWS_ENDPOINT_URL pointing back at the local cloud; it imports the handler once and
then serves invocations one at a time, so, as on AWS, warm invocations skip the
import and globals such as cached clients survive, while concurrent invocations get
environments of their own. Handler errors, timeouts, retries and catches behave as
on AWS; a timed-out environment is discarded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

ENTRY = Path(__file__).with_name("lambda_entry.py")
CODE_CACHE = Path(tempfile.gettempdir()) / "mlops-localcloud-lambda"

_idle: dict[tuple, list[_Environment]] = {}
_all: list[_Environment] = []
_lock = threading.Lock()


def _code_dir(code_bytes: bytes) -> Path:
    digest = hashlib.sha256(code_bytes).hexdigest()[:16]
    target = CODE_CACHE / digest
    if not target.is_dir():
        CODE_CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{digest}-", dir=CODE_CACHE))
        with zipfile.ZipFile(io.BytesIO(code_bytes)) as archive:
            archive.extractall(staging)
        # Another invocation may have unpacked the same code first; theirs is as good.
        with contextlib.suppress(OSError):
            staging.rename(target)
    return target


def endpoint_url() -> str:
    from moto import settings

    return f"http://127.0.0.1:{settings.moto_server_port()}"


class _Environment:
    """One execution environment: a process serving one invocation at a time."""

    def __init__(self, code_dir: Path, handler: str, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-E", str(ENTRY), str(code_dir), handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=code_dir,
            text=True,
            bufsize=1,
        )

    def invoke(self, event: object, timeout: float) -> dict | None:
        """The answer, or None when the invocation timed out or the process died."""
        request = {
            "event": json.loads(event) if isinstance(event, str) else event,
            "timeout": timeout,
        }
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()


def _environment_vars(fn) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": fn.region,
        "AWS_DEFAULT_REGION": fn.region,
        "AWS_ENDPOINT_URL": endpoint_url(),
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout),
        "_HANDLER": fn.handler,
        **{k: str(v) for k, v in (fn.environment_vars or {}).items()},
    }


def run_function(fn, event) -> tuple[str, bool, str]:
    """Invoke `fn` (a moto LambdaFunction) with `event`; returns (payload, errored, logs)."""
    code_dir = _code_dir(fn.code_bytes)
    env = _environment_vars(fn)
    key = (str(code_dir), fn.handler, tuple(sorted(env.items())))
    with _lock:
        pool = _idle.setdefault(key, [])
        environment = pool.pop() if pool else None
    if environment is None:
        environment = _Environment(code_dir, fn.handler, env)
        with _lock:
            _all.append(environment)
    answer = environment.invoke(event, float(fn.timeout))
    if answer is None:
        environment.kill()
        message = f"Task timed out after {float(fn.timeout):.2f} seconds"
        body, errored, logs = (
            json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}),
            True,
            message,
        )
    else:
        with _lock:
            _idle[key].append(environment)
        body, errored, logs = json.dumps(answer["result"]), not answer["ok"], answer["logs"]
    fn.logs_backend.ensure_log_group(fn.logs_group_name)
    fn.save_logs(logs or "(no output)")
    return body, errored, logs


def shutdown() -> None:
    """End every execution environment (the local cloud is stopping)."""
    with _lock:
        environments = list(_all)
        _all.clear()
        _idle.clear()
    for environment in environments:
        environment.kill()


def install() -> None:
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self, event=None):
        return run_function(self, event if event is not None else {})

    LambdaFunction._invoke_lambda = _invoke_lambda
