"""What the limiter keeps in an ASGI scope (read by ``limit()`` dependencies)."""

SCOPE_KEY = "fastapi_ratelimits"  # the RateLimits handle, for limit() dependencies
DEPENDENCY_KEY = "fastapi_ratelimits.dependencies"  # decisions of limit() dependencies

__all__ = ["DEPENDENCY_KEY", "SCOPE_KEY"]
