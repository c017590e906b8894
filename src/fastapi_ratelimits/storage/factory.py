"""Open the store a config (or ``install(storage=...)``) names.

``memory://`` is the in-process :class:`MemoryStore`. Anything else is Redis (or Valkey),
opened through ``storage.redis.RedisStore``, imported only when asked for, so that the
redis extra stays optional. ``storage=`` may also be a ready redis client. A network store
is wrapped in a circuit breaker (:mod:`.breaker`) unless ``storage.breaker_failures`` is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config.models import StorageConfig
from ..errors import ConfigError
from .base import Store
from .breaker import BreakerStore
from .memory import MemoryStore
from .refusals import RefusalCache


def is_memory(url: str) -> bool:
    return url.startswith("memory://")


def _redis_store_class() -> Any:
    try:
        from .redis.store import RedisStore
    except ImportError as exc:
        raise ConfigError(
            f"a Redis store is not available here ({exc}); install the redis extra: "
            "pip install 'fastapi-ratelimits[redis]'"
        ) from None
    return RedisStore


def _check_client(client: Any) -> None:
    try:
        import redis.asyncio
    except ImportError:
        raise ConfigError("storage= got a client but redis is not installed: pip install 'fastapi-ratelimits[redis]'"
                          ) from None

    kinds: tuple[type, ...] = (redis.asyncio.Redis,)
    cluster = getattr(getattr(redis.asyncio, "cluster", None), "RedisCluster", None)
    if cluster is not None:
        kinds += (cluster,)
    if not isinstance(client, kinds):
        raise ConfigError(
            f"storage= takes a URL or a redis.asyncio client (redis.asyncio.Redis or RedisCluster), "
            f"not {type(client).__module__}.{type(client).__name__}: the limiter runs on the event loop"
        )


def check_storage(cfg: StorageConfig, override: Any = None) -> None:
    """Fail at install, not at the first request, when the store cannot be opened."""
    if isinstance(override, str):
        try:
            StorageConfig(url=override)
        except Exception:
            raise ConfigError(f"storage={override!r} is not a storage URL (memory://, redis://host:6379/0, ...)") from None
        url = override
    elif override is not None:
        _check_client(override)
        _redis_store_class()
        return
    else:
        url = cfg.url
    if not is_memory(url):
        _redis_store_class()


def open_store(cfg: StorageConfig, override: Any = None, clock_us: Callable[[], int] | None = None) -> Store:
    """A new store for ``cfg`` (``override``: a URL or a redis client, from install)."""
    if override is not None and not isinstance(override, str):
        cls = _redis_store_class()
        return _guarded(cls(override, key_prefix=cfg.key_prefix, timeout_ms=cfg.timeout_ms), cfg)
    url = override if isinstance(override, str) else cfg.url
    if is_memory(url):
        return MemoryStore(max_keys=cfg.memory_max_keys, clock=clock_us)
    cls = _redis_store_class()
    store = cls.from_url(url, key_prefix=cfg.key_prefix, timeout_ms=cfg.timeout_ms, pool_size=cfg.pool_size)
    return _guarded(store, cfg)


def _guarded(store: Store, cfg: StorageConfig) -> Store:
    if cfg.breaker_failures == 0:
        return store
    return BreakerStore(store, failures=cfg.breaker_failures, reset_ms=cfg.breaker_reset_ms)


def refusal_cache(store: Store) -> RefusalCache | None:
    """The refusals a network store keeps (:mod:`.refusals`), through its breaker; None
    for a store that keeps none (the memory store decides in process anyway)."""
    inner = store.inner if isinstance(store, BreakerStore) else store
    if isinstance(inner, MemoryStore):
        return None
    try:
        from .redis.store import RedisStore
    except ImportError:  # no redis extra: no Redis store either
        return None
    return inner.refusals if isinstance(inner, RedisStore) else None
