"""Install every local-cloud executor into moto, once, after checking moto's version.

Each gap module patches one moto backend and has tests (tests/functional/localcloud/)
that fail loudly when a moto upgrade changes what the patch relies on.
"""

from __future__ import annotations

from importlib.metadata import version

MOTO_VERSION = "5.2.5"
# One module per service whose gap the local cloud closes; each has an install().
GAP_MODULES = ("lambdas", "glue", "sagemaker", "events", "cloudformation")
_installed = False


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
    _installed = True
