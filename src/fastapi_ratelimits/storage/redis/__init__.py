"""The Redis store: ``RedisStore`` (``redis.asyncio``) and ``SyncRedisStore`` (sync clients).

``store`` is the async store, ``sync`` the sync face, ``batch`` the batched decision
calls both send, ``connect`` the connections (URL, TLS, Sentinel, Cluster), ``wire`` the
store's own pipelined connection, ``scripts`` the Lua scripts (``storage/lua/``).
"""

from .store import RedisStore, SyncRedisStore

__all__ = ["RedisStore", "SyncRedisStore"]
