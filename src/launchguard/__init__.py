"""launchguard: one drop-in middleware that makes a Python web app launch ready.

Usage::

    from launchguard import LaunchGuard

    guard = LaunchGuard(service="portal")
    app = guard.asgi(app)   # any ASGI app (FastAPI, Starlette, Django ASGI)
    app = guard.wsgi(app)   # any WSGI app (Flask, Django WSGI)

Importing this package imports nothing else: ``prometheus_client`` is loaded on first use, so
``PROMETHEUS_MULTIPROC_DIR`` set by ``launchguard.gunicorn`` still takes effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ConfigError", "LaunchGuard", "MissingExtraError", "__version__"]

if TYPE_CHECKING:
    from ._config import ConfigError
    from ._extras import MissingExtraError
    from ._guard import LaunchGuard


def __getattr__(name: str) -> Any:
    if name == "LaunchGuard":
        from ._guard import LaunchGuard

        return LaunchGuard
    if name == "ConfigError":
        from ._config import ConfigError

        return ConfigError
    if name == "MissingExtraError":
        from ._extras import MissingExtraError

        return MissingExtraError
    raise AttributeError(f"module 'launchguard' has no attribute {name!r}")
