"""Lambda gap: moto runs function code only in Docker; here it runs in local execution environments.

The deployed zip is unpacked once per content hash. Each environment is a Python
process (lambda_entry.py) with the function's environment variables and
AWS_ENDPOINT_URL pointing back at the local cloud; it imports the handler once and
then serves invocations one at a time, so, as on AWS, warm invocations skip the
import and globals such as cached clients survive, while concurrent invocations get
environments of their own. Handler errors, timeouts, retries and catches behave as
on AWS; a timed-out environment is discarded.

Fault injection (the local cloud's stand-in for AWS FIS's aws:lambda:invocation-error action):
"fail the next N invocations of function F with error E" (N omitted: every one until removed),
set over HTTP on the local cloud itself, so it works in-process and against `mlops local up`:
    POST   /moto-api/localcloud/lambda-faults  {"function_name", "count", "error_type", "message"}
    GET    /moto-api/localcloud/lambda-faults  the faults and how often each has fired
    DELETE /moto-api/localcloud/lambda-faults  remove them all (the cloud's reset does too)
A faulted invocation does not run the code; it returns the function error
{"errorType": E, "errorMessage": ...} as a raising handler would, so Step Functions names the
error E and its Retry/Catch apply. `inject_fault`, `faults` and `clear_faults` are the client.
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


# --- fault injection ----------------------------------------------------------------

FAULTS_PATH = "/moto-api/localcloud/lambda-faults"
_faults: dict[str, dict] = {}  # function name -> {"count": remaining or None, "fired", ...}


class FaultError(ValueError):
    """A fault request the local cloud cannot apply; the message says what to send instead."""


def _parse_fault(body: object) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get("function_name"), str):
        raise FaultError('send {"function_name": "<name>", "count": N, "error_type": "<Error>"}')
    count = body.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise FaultError(f"count {count!r} must be a positive integer, or null for every call")
    error_type = body.get("error_type") or "InjectedFault"
    if not isinstance(error_type, str):
        raise FaultError(
            f"error_type {error_type!r} must be a string, e.g. Lambda.ServiceException"
        )
    message = (
        body.get("message") or f"fault injected by the local cloud into {body['function_name']}"
    )
    return {
        "function_name": body["function_name"],
        "count": count,
        "error_type": error_type,
        "message": str(message),
        "fired": 0,
    }


def _take_fault(function_name: str) -> dict | None:
    """The fault this invocation of `function_name` must fail with, if any (counted)."""
    with _lock:
        fault = _faults.get(function_name)
        if fault is None:
            return None
        fault["fired"] += 1
        if fault["count"] is not None:
            fault["count"] -= 1
            if fault["count"] == 0:
                del _faults[function_name]
        return dict(fault)


def faults_response(request, full_url: str, headers) -> tuple[int, dict, bytes]:
    """The moto-api handler of FAULTS_PATH."""
    answer_headers = {"Content-Type": "application/json"}
    if request.method == "POST":
        try:
            raw = request.data if hasattr(request, "data") else request.body
            fault = _parse_fault(json.loads(raw or b"null"))
        except (FaultError, ValueError) as exc:
            body = {"error": f"{FAULTS_PATH}: {exc}"}
            return 400, answer_headers, json.dumps(body).encode()
        with _lock:
            _faults[fault["function_name"]] = fault
    elif request.method == "DELETE":
        with _lock:
            _faults.clear()
    with _lock:
        listed = sorted(_faults.values(), key=lambda f: f["function_name"])
        return 200, answer_headers, json.dumps({"faults": listed}).encode()


def _faults_call(url: str, method: str, body: dict | None = None) -> list[dict]:
    import urllib.request

    request = urllib.request.Request(
        url.rstrip("/") + FAULTS_PATH,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["faults"]


def inject_fault(
    url: str, function_name: str, count: int | None, error_type: str, message: str | None = None
) -> list[dict]:
    """Make the next `count` invocations (None: all) of `function_name` fail with `error_type`."""
    body = {"function_name": function_name, "count": count, "error_type": error_type}
    return _faults_call(url, "POST", {**body, "message": message})


def faults(url: str) -> list[dict]:
    return _faults_call(url, "GET")


def clear_faults(url: str) -> list[dict]:
    return _faults_call(url, "DELETE")


def run_function(fn, event) -> tuple[str, bool, str]:
    """Invoke `fn` (a moto LambdaFunction) with `event`; returns (payload, errored, logs)."""
    fault = _take_fault(fn.function_name)
    if fault:
        logs = f"local cloud fault injection: {fault['error_type']}: {fault['message']}"
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        fn.save_logs(logs)
        error = {"errorType": fault["error_type"], "errorMessage": fault["message"]}
        return json.dumps(error), True, logs
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
    """End every execution environment (the local cloud is stopping); forget the faults."""
    with _lock:
        environments = list(_all)
        _all.clear()
        _idle.clear()
        _faults.clear()
    for environment in environments:
        environment.kill()


def install() -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.moto_api._internal import urls

    def _invoke_lambda(self, event=None):
        return run_function(self, event if event is not None else {})

    LambdaFunction._invoke_lambda = _invoke_lambda
    # moto builds its moto-api routes from this table when the server first answers.
    urls.url_paths["{0}" + FAULTS_PATH] = faults_response
    _patch_reset()


def _patch_reset() -> None:
    """moto's /moto-api/reset empties every backend; it forgets the injected faults too."""
    from moto.moto_api._internal.models import moto_api_backend

    reset = type(moto_api_backend).reset
    if getattr(reset, "mlops_faults", False):
        return

    def reset_and_forget(self, *args, **kwargs):
        with _lock:
            _faults.clear()
        return reset(self, *args, **kwargs)

    reset_and_forget.mlops_faults = True
    type(moto_api_backend).reset = reset_and_forget
