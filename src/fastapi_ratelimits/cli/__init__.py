"""The ``fastapi-ratelimits`` command: ``check``, ``explain``, ``bench``, ``schema``, ``demo``.

``main`` is the console script's entry point (``fastapi_ratelimits.cli:main``).
"""

from .commands import main

__all__ = ["main"]
