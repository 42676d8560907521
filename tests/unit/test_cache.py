"""The response cache: LRU and TTL in process, generations, and stepping aside on failure."""

from __future__ import annotations

import pytest

from starterkit.cache import CachedResponse, MemoryBackend, ResponseCache

pytestmark = pytest.mark.anyio


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyBackend(MemoryBackend):
    """A memory backend that can be switched off, like a Redis that went away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("backend down")

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        self._check()
        return await super().get_many(keys)

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        self._check()
        await super().set(key, value, ttl)

    async def incr(self, key: str, ttl: int) -> int:
        self._check()
        return await super().incr(key, ttl)


def response(text: str) -> CachedResponse:
    return CachedResponse(body=text.encode(), etag=f'"{text}"')


async def test_memory_backend_expires_and_evicts_least_recently_used() -> None:
    clock = Ticker()
    backend = MemoryBackend(max_entries=2, clock=clock)
    await backend.set("a", b"1", ttl=10)
    await backend.set("b", b"2", ttl=10)
    assert await backend.get_many(["a"]) == [b"1"]  # "a" is now the most recent
    await backend.set("c", b"3", ttl=10)
    assert await backend.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    clock.now += 11
    assert await backend.get_many(["a", "c"]) == [None, None]
    assert await backend.incr("n", ttl=1) == 1
    assert await backend.incr("n", ttl=1) == 2


async def test_hit_after_store_and_invalidate_hides_old_entries() -> None:
    cache = ResponseCache(MemoryBackend(), ttl_seconds=30, prefix="t:")
    miss = await cache.lookup(1, "items")
    assert miss.hit is None
    assert miss.key is not None
    await cache.store(miss, response("v1"))
    assert (await cache.lookup(1, "items")).hit == response("v1")
    assert (await cache.lookup(2, "items")).hit is None  # other users never share entries
    await cache.invalidate(1)
    assert (await cache.lookup(1, "items")).hit is None
    assert (cache.hits, cache.misses) == (1, 3)


async def test_a_read_racing_a_write_cannot_plant_a_stale_entry() -> None:
    cache = ResponseCache(MemoryBackend(), ttl_seconds=30, prefix="t:")
    read = await cache.lookup(1, "items")  # the read looks up, then queries the database ...
    await cache.invalidate(1)  # ... a write commits and invalidates meanwhile ...
    await cache.store(read, response("stale"))  # ... and the read stores what it saw.
    assert (await cache.lookup(1, "items")).hit is None


async def test_ttl_zero_disables_the_cache() -> None:
    backend = FlakyBackend()
    cache = ResponseCache(backend, ttl_seconds=0, prefix="t:")
    lookup = await cache.lookup(1, "items")
    await cache.store(lookup, response("x"))
    await cache.invalidate(1)
    assert lookup.hit is None
    assert lookup.key is None
    assert backend.calls == 0


async def test_a_failing_backend_is_bypassed_then_the_epoch_is_bumped_on_recovery(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monotonic = Ticker()
    monkeypatch.setattr("starterkit.cache.time.monotonic", monotonic)
    backend = FlakyBackend()
    cache = ResponseCache(backend, ttl_seconds=30, prefix="t:")
    await cache.store(await cache.lookup(1, "items"), response("before"))

    backend.down = True
    failed = await cache.lookup(1, "items")
    assert failed.hit is None
    assert failed.key is None
    calls = backend.calls
    await cache.invalidate(1)  # a write during the outage cannot bump the generation
    assert (await cache.lookup(1, "items")).hit is None
    assert backend.calls == calls  # stepped aside: no new attempts during the pause
    assert caplog.text.count("cache backend failed") == 1

    backend.down = False
    monotonic.now += 6
    # The old entry survived in the backend, but the epoch bump makes it unreachable.
    assert (await cache.lookup(1, "items")).hit is None
    assert "reachable again" in caplog.text
