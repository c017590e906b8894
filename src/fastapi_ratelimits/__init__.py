"""fastapi-ratelimits: rate limits for FastAPI driven by a rules file."""

from .api import Decision, Limiter
from .config import LoadedConfig, RateLimitsConfig, load_config
from .errors import ConfigError, RateLimitExceeded, StorageError
from .rates import Rate, parse_rate
from .registry import register_algorithm, register_identity

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Decision",
    "Limiter",
    "RateLimitExceeded",
    "LoadedConfig",
    "Rate",
    "RateLimitsConfig",
    "StorageError",
    "__version__",
    "load_config",
    "parse_rate",
    "register_algorithm",
    "register_identity",
]
