"""Install every local-cloud executor into moto, once, after checking moto's version.

Each gap module patches one moto backend and has tests (tests/functional/localcloud/)
that fail loudly when a moto upgrade changes what the patch relies on. One gap is closed here
rather than in a module of its own: moto's DynamoDB is not thread-safe (see
_serialise_dynamodb), and concurrent executions are exactly what the registry must survive.
"""

from __future__ import annotations

import functools
import threading
from importlib.metadata import version

MOTO_VERSION = "5.2.5"
# One module per service whose gap the local cloud closes; each has an install().
GAP_MODULES = ("lambdas", "glue", "sagemaker", "events", "cloudformation")
_installed = False
# One DynamoDB request at a time, across every account and region of the server.
DYNAMODB_LOCK = threading.RLock()  # re-entrant: a handler may call another in-process


class MotoVersionError(Exception):
    """The installed moto is not the version the local cloud's patches were written for."""


def install() -> None:
    global _installed
    if _installed:
        return
    found = version("moto")
    if found != MOTO_VERSION:
        raise MotoVersionError(
            f"moto {found} is installed but the local cloud supports {MOTO_VERSION} only. "
            "Fix: run `make install` (requirements.lock pins it), or update pipeline/localcloud "
            "and its tests for the new version"
        )
    import importlib

    for name in GAP_MODULES:
        importlib.import_module(f"pipeline.localcloud.{name}").install()
    _serialise_dynamodb()
    _installed = True


def _serialise_dynamodb() -> None:
    """Handle one DynamoDB request at a time, as DynamoDB applies each request atomically.

    The server answers each request in its own thread, and moto's DynamoDB backend takes no
    lock: TransactWriteItems deep-copies every table it touches and, when a condition fails
    (the promote Lambda's race for PRODUCTION, by design), puts those copies back, erasing
    whatever other threads wrote meanwhile (a COUNTER increment, a MODEL# or RUN# item); a copy
    taken while another thread writes can also fail with "dictionary changed size". Real
    DynamoDB has no such window. Requests of concurrent executions still interleave freely
    between each other, which is the race the registry is designed for; only moto's handling of
    one request is made indivisible. Patched: moto.dynamodb.responses.DynamoHandler.call_action
    (every DynamoDB API call, from Lambdas, Step Functions tasks and clients alike, goes
    through it; tests/functional/localcloud/test_dynamodb_gap.py fails without this).
    """
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "_serialised", False):
        return

    @functools.wraps(original)
    def call_action(self):  # type: ignore[no-untyped-def]
        with DYNAMODB_LOCK:
            return original(self)

    call_action._serialised = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
