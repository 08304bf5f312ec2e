"""A Lambda execution environment: imports the handler once, then serves invocations.

Usage: python lambda_entry.py CODE_DIR HANDLER
Reads one JSON request per line on stdin ({"event": ..., "timeout": seconds}) and
answers each with one JSON line on stdout: {"ok": bool, "result": <handler result
or the runtime's error document {"errorType", "errorMessage", "stackTrace"}>,
"logs": <what the invocation printed>}. Like the Lambda runtime, the module and
its globals (cached clients) survive between invocations of one environment, and
a handler error does not end the environment. Standard library only: it runs with
the function's code dir first on sys.path, like /var/task.
"""

import contextlib
import importlib
import io
import json
import os
import sys
import time
import traceback


class _Context:
    def __init__(self, name: str, timeout: float):
        self.function_name = name
        self.aws_request_id = "local"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _invoke(function, event, timeout: float) -> dict:
    logs = io.StringIO()
    context = _Context(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"), timeout)
    with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
        try:
            return {"ok": True, "result": function(event, context), "logs": logs.getvalue()}
        except Exception as exc:  # the runtime reports every handler error the same way
            traceback.print_exc()
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                # Without this file's own frame, as the runtime shows only the handler's.
                "stackTrace": traceback.format_tb(exc.__traceback__.tb_next),
            }
    return {"ok": False, "result": error, "logs": logs.getvalue()}


def main() -> int:
    code_dir, handler = sys.argv[1:3]
    sys.path.insert(0, code_dir)
    module_name, _, function_name = handler.rpartition(".")
    protocol = sys.stdout
    function = None
    for line in sys.stdin:
        request = json.loads(line)
        if function is None:
            try:
                function = getattr(importlib.import_module(module_name), function_name)
            except Exception as exc:  # Runtime.ImportModuleError on AWS
                answer = {
                    "ok": False,
                    "result": {
                        "errorType": "Runtime.ImportModuleError",
                        "errorMessage": f"{handler}: {exc}",
                    },
                    "logs": traceback.format_exc(),
                }
                protocol.write(json.dumps(answer, default=str) + "\n")
                protocol.flush()
                return 1
        answer = _invoke(function, request["event"], float(request.get("timeout", 60)))
        protocol.write(json.dumps(answer, default=str) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
