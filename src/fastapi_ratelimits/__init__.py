"""fastapi-ratelimits: rate limits for FastAPI driven by a rules file."""

from typing import TYPE_CHECKING, Any

from . import api, compiled
from .api import Limiter
from .config import LoadedConfig, RateLimitsConfig, load_config
from .core.decision import Decision, RuleOutcome
from .core.rates import Rate, parse_rate
from .core.registry import register_algorithm, register_identity
from .errors import ConfigError, RateLimitExceeded, StorageError
from .http.dependency import RateLimitRefused, limit
from .http.middleware import RateLimitMiddleware
from .install import RateLimits, ReloadResult, install

if TYPE_CHECKING:
    from .compat import (
        BaseRateLimiter,
        FixedWindowRateLimiter,
        LeakyBucketLimiter,
        QueueLimiter,
        SlidingWindowLogRateLimiter,
        SlidingWindowRateLimiter,
        TokenBucketLimiter,
    )

__version__ = "0.1.0"

compiled.warn_if_stale()  # an editable install's extensions older than the sources they were built from

# The classes of fastapi-advanced-rate-limiter, imported on first use (``compat``).
_COMPAT = frozenset({
    "BaseRateLimiter",
    "FixedWindowRateLimiter",
    "LeakyBucketLimiter",
    "QueueLimiter",
    "SlidingWindowLogRateLimiter",
    "SlidingWindowRateLimiter",
    "TokenBucketLimiter",
})


def __getattr__(name: str) -> Any:
    if name in _COMPAT:
        from . import compat

        return getattr(compat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _COMPAT)


__all__ = [
    "BaseRateLimiter",
    "ConfigError",
    "Decision",
    "FixedWindowRateLimiter",
    "LeakyBucketLimiter",
    "Limiter",
    "LoadedConfig",
    "QueueLimiter",
    "Rate",
    "RateLimitExceeded",
    "RateLimitMiddleware",
    "RateLimitRefused",
    "RateLimits",
    "RateLimitsConfig",
    "ReloadResult",
    "RuleOutcome",
    "SlidingWindowLogRateLimiter",
    "SlidingWindowRateLimiter",
    "StorageError",
    "TokenBucketLimiter",
    "__version__",
    "api",
    "install",
    "limit",
    "load_config",
    "parse_rate",
    "register_algorithm",
    "register_identity",
]
