"""fastapi-ratelimits: rate limits for FastAPI driven by a rules file."""

from . import api
from .api import Limiter
from .config import LoadedConfig, RateLimitsConfig, load_config
from .decision import Decision, RuleOutcome
from .dependency import RateLimitRefused, limit
from .errors import ConfigError, RateLimitExceeded, StorageError
from .install import RateLimits, ReloadResult, install
from .middleware import RateLimitMiddleware
from .rates import Rate, parse_rate
from .registry import register_algorithm, register_identity

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Decision",
    "Limiter",
    "LoadedConfig",
    "Rate",
    "RateLimitExceeded",
    "RateLimitMiddleware",
    "RateLimitRefused",
    "RateLimits",
    "RateLimitsConfig",
    "ReloadResult",
    "RuleOutcome",
    "StorageError",
    "__version__",
    "api",
    "install",
    "limit",
    "load_config",
    "parse_rate",
    "register_algorithm",
    "register_identity",
]
