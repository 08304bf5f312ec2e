"""Run the local cloud: moto's server with the gaps closed, on 127.0.0.1:PORT.

In a test or script: `with LocalCloud() as cloud: ...` (a thread in this process,
AWS_ENDPOINT_URL set for the block). From the CLI: `mlops local up` starts
`python -m pipeline.localcloud.server --port N` in the background with pid and log
files under .mlops/; `mlops local down` stops it; `mlops local status` reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

DEFAULT_PORT = 4566
STATE_DIR = Path(".mlops")
REGION_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION")
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}}


class LocalCloudError(Exception):
    """The local cloud could not be started, reached or stopped."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _configure(url: str) -> None:
    request = urllib.request.Request(
        f"{url}/moto-api/config",
        data=json.dumps(MOTO_CONFIG).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/config", timeout=2):
            return True
    except OSError:
        return False


class LocalCloud:
    """The local cloud in a thread of this process."""

    def __init__(self, port: int | None = None, region: str = "eu-west-1"):
        self.port = port or free_port()
        self.region = region
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._saved_env: dict[str, str | None] = {}

    def start(self) -> LocalCloud:
        from moto.server import ThreadedMotoServer

        from pipeline.localcloud import gaps

        os.environ["MOTO_PORT"] = str(self.port)  # executors call back into this server
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        # The ASL interpreter logs every failed state at ERROR, even when the machine catches
        # it by design; the execution history records the same facts for whoever asks.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        gaps.install()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        _configure(self.url)
        return self

    def stop(self) -> None:
        # Executors that keep processes: model servers, Lambda environments.
        from pipeline.localcloud import lambdas, sagemaker

        sagemaker.shutdown()
        lambdas.shutdown()
        if self._server:
            # moto's backends live in this process, not in the server thread: empty them so
            # the next LocalCloud starts as clean as a new server process would.
            request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
            with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):
                pass
            self._server.stop()
            self._server = None

    def client_env(self) -> dict[str, str]:
        """What a process needs to talk to this cloud instead of AWS."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def __enter__(self) -> LocalCloud:
        self.start()
        for key, value in self.client_env().items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.stop()


# --- background process (mlops local up/down/status) -------------------------------


def _files(state_dir: Path) -> tuple[Path, Path, Path]:
    return state_dir / "localcloud.pid", state_dir / "localcloud.log", state_dir / "localcloud.json"


def status(state_dir: Path = STATE_DIR) -> dict | None:
    """{"pid", "port", "url"} of the running background cloud, or None."""
    pid_file, _, info_file = _files(state_dir)
    if not info_file.is_file() or not pid_file.is_file():
        return None
    info = json.loads(info_file.read_text())
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return None
    return info if is_up(info["url"]) else None


def up(port: int = DEFAULT_PORT, state_dir: Path = STATE_DIR, timeout: float = 30) -> dict:
    import subprocess

    running = status(state_dir)
    if running:
        return running
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file, log_file, info_file = _files(state_dir)
    url = f"http://127.0.0.1:{port}"
    if is_up(url):
        raise LocalCloudError(
            f"port {port} is already serving something else. Fix: `mlops local up --port N`"
        )
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.localcloud.server", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI that started it; `down` stops it
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalCloudError(f"the local cloud exited at start-up; see {log_file}")
        if is_up(url):
            pid_file.write_text(str(proc.pid))
            info = {"pid": proc.pid, "port": port, "url": url, "log": str(log_file)}
            info_file.write_text(json.dumps(info))
            return info
        time.sleep(0.2)
    proc.kill()
    raise LocalCloudError(
        f"the local cloud did not answer on {url} within {timeout:.0f}s; see {log_file}"
    )


def down(state_dir: Path = STATE_DIR, timeout: float = 10) -> bool:
    """Stop the background cloud and its children; False when none was running."""
    pid_file, _, info_file = _files(state_dir)
    if not pid_file.is_file():
        return False
    try:
        pid = int(pid_file.read_text())
        os.killpg(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pid = None
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        if pid:
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    info_file.unlink(missing_ok=True)
    return pid is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the local cloud in the foreground")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    cloud = LocalCloud(port=args.port).start()
    print(f"local cloud listening on {cloud.url}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    cloud.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
