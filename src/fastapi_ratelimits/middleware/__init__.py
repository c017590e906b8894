"""An alias of :mod:`fastapi_ratelimits.http.middleware`, kept for imports written before
the layout by layers (``RateLimitMiddleware`` is also at the top level). Nothing in the
package imports it. A folder, not a file, so that git follows the old ``middleware.py`` to
its new place."""

from ..http.middleware import Headers, Limits, RateLimitMiddleware

__all__ = ["Headers", "Limits", "RateLimitMiddleware"]
