"""The built-in algorithms, one module each (the registry, :mod:`..core.registry`, knows them by name)."""

from .base import Algorithm, LimitParams, LimitResult
from .fixed_window import FixedWindow
from .gcra import GCRA
from .leaky_bucket import LeakyBucket
from .queue import Queue
from .sliding_window import SlidingWindow
from .sliding_window_log import SlidingWindowLog
from .token_bucket import TokenBucket

BUILTINS: tuple[type[Algorithm], ...] = (
    TokenBucket, LeakyBucket, FixedWindow, SlidingWindow, SlidingWindowLog, Queue, GCRA,
)

__all__ = [
    "BUILTINS", "GCRA", "Algorithm", "FixedWindow", "LeakyBucket", "LimitParams", "LimitResult",
    "Queue", "SlidingWindow", "SlidingWindowLog", "TokenBucket",
]
