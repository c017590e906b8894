"""An alias of :mod:`fastapi_ratelimits.http.dependency`, kept for imports written before
the layout by layers (``limit`` and ``RateLimitRefused`` are also at the top level).
Nothing in the package imports it. A folder, not a file, so that git follows the old
``dependency.py`` to its new place."""

from ..http.dependency import RateLimitDependency, RateLimitRefused, limit, setup_app

__all__ = ["RateLimitDependency", "RateLimitRefused", "limit", "setup_app"]
