from fastapi_ratelimits.algorithms import BUILTINS, LimitParams
from fastapi_ratelimits.storage.base import Check
from fastapi_ratelimits.storage.memory import MemoryStore


def test_every_builtin_refuses_past_its_limit() -> None:
    for cls in BUILTINS:
        if cls.name == "queue":
            continue
        store = MemoryStore()
        p = LimitParams(5, 1_000_000, 5, 0)
        check = Check("r", cls.name, "k", (p,))
        allowed = [store.decide_sync([check], 10_000_000)[0].allowed for _ in range(8)]
        assert allowed == [True] * 5 + [False] * 3, cls.name
