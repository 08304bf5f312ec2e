"""Serves one model the way the SageMaker scikit-learn inference container does.

Usage: python sagemaker_serve.py CODE_DIR MODEL_DIR PROGRAM READY_FILE
Imports PROGRAM (e.g. entry.py, as module `entry`) with CODE_DIR first on sys.path, calls
model_fn(MODEL_DIR) once, then answers on 127.0.0.1 (a free port): GET /ping -> 200, POST
/invocations -> input_fn(body, content_type) -> predict_fn(data, model) -> output_fn(prediction,
accept). When the model is loaded it writes {"port", "pid"} to READY_FILE; a load error exits 1
with the error as the last stderr line. A hook that raises answers 500 with `<Error>: <message>`
and logs the traceback, which InvokeEndpoint turns into a ModelError. Standard library only: it
runs in the project's interpreter but imports nothing of the project.
"""

import importlib
import json
import os
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_CONTENT_TYPE = os.environ.get(
    "SAGEMAKER_DEFAULT_INVOCATIONS_CONTENT_TYPE", "application/json"
)
DEFAULT_ACCEPT = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")


class UnsupportedFormatError(Exception):
    """The default handlers cannot decode or encode this content type (HTTP 415)."""


def default_input_fn(body, content_type):
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return json.loads(text)
    if media == "text/csv":
        return [[float(cell) for cell in line.split(",")] for line in text.splitlines() if line]
    raise UnsupportedFormatError(
        f"content type {content_type} is not supported by default_input_fn"
    )


def default_predict_fn(data, model):
    return model.predict(data)


def default_output_fn(prediction, accept):
    if accept.split(";", 1)[0].strip().lower() not in ("application/json", "*/*"):
        raise UnsupportedFormatError(f"accept type {accept} is not supported by default_output_fn")
    if hasattr(prediction, "tolist"):
        prediction = prediction.tolist()
    return json.dumps(prediction), "application/json"


class Hooks:
    def __init__(self, module, model_dir: str):
        if not hasattr(module, "model_fn"):
            raise NotImplementedError(
                f"{module.__file__} has no model_fn(model_dir); the scikit-learn container needs "
                "one to load the model"
            )
        self.input_fn = getattr(module, "input_fn", default_input_fn)
        self.predict_fn = getattr(module, "predict_fn", default_predict_fn)
        self.output_fn = getattr(module, "output_fn", default_output_fn)
        self.model = module.model_fn(model_dir)

    def transform(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        data = self.input_fn(body, content_type)
        prediction = self.predict_fn(data, self.model)
        result = self.output_fn(prediction, accept)
        # The toolkit accepts (body, content type) or a bare body sent as the Accept type.
        body_out, type_out = result[:2] if isinstance(result, tuple) else (result, accept)
        if isinstance(body_out, str):
            body_out = body_out.encode("utf-8")
        elif not isinstance(body_out, bytes | bytearray):
            body_out = json.dumps(body_out).encode("utf-8")
        return bytes(body_out), type_out


def make_handler(hooks: Hooks):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/ping":
                self._reply(200, b"", "application/json")
            else:
                self._reply(404, b"not found", "text/plain")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/invocations":
                self._reply(404, b"not found", "text/plain")
                return
            content_type = self.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
            accept = self.headers.get("Accept") or "*/*"
            if accept == "*/*":
                accept = DEFAULT_ACCEPT
            try:
                out, out_type = hooks.transform(body, content_type, accept)
            except UnsupportedFormatError as exc:
                self._reply(415, f"UnsupportedFormatError: {exc}".encode(), "text/plain")
            except Exception as exc:  # the container reports every hook error as a 500
                traceback.print_exc()
                self._reply(500, f"{type(exc).__name__}: {exc}".encode(), "text/plain")
            else:
                self._reply(200, out, out_type)

    return Handler


def main() -> int:
    code_dir, model_dir, program, ready_file = sys.argv[1:5]
    # Replace this script's own dir: its sibling modules (sagemaker.py, glue.py...) must not
    # shadow what the model's code imports.
    sys.path[0] = code_dir
    module_name = program[:-3] if program.endswith(".py") else program
    try:
        hooks = Hooks(importlib.import_module(module_name), model_dir)
    except Exception as exc:
        traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(hooks))
    server.daemon_threads = True
    staging = ready_file + ".tmp"
    with open(staging, "w") as fh:
        json.dump({"port": server.server_address[1], "pid": os.getpid()}, fh)
    os.replace(staging, ready_file)  # the parent never reads a half-written file
    print(f"serving {program} from {code_dir} on port {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
