"""The response cache: LRU and TTL in process, generations, and stepping aside on failure."""

from __future__ import annotations

import asyncio

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


async def test_concurrent_misses_of_one_entry_compute_it_once() -> None:
    cache = ResponseCache(MemoryBackend(), ttl_seconds=30, prefix="t:")
    computed = 0
    release = asyncio.Event()

    async def compute() -> CachedResponse:
        nonlocal computed
        computed += 1
        await release.wait()  # the entry's query takes a while; others arrive meanwhile
        return response(f"v{computed}")

    readers = [asyncio.create_task(cache.fetch(1, "items", compute)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*readers)
    assert computed == 1
    assert results == [response("v1")] * 20
    assert (await cache.lookup(1, "items")).hit == response("v1")  # stored once, by the first


async def test_a_miss_after_a_write_never_joins_the_computation_of_an_older_generation() -> None:
    cache = ResponseCache(MemoryBackend(), ttl_seconds=30, prefix="t:")
    release = asyncio.Event()
    versions = iter(["before the write", "after the write"])

    async def compute() -> CachedResponse:
        text = next(versions)
        if text == "before the write":
            await release.wait()
        return response(text)

    early = asyncio.create_task(cache.fetch(1, "items", compute))
    await asyncio.sleep(0)
    await cache.invalidate(1)  # a write commits while the early read is computing
    late = await cache.fetch(1, "items", compute)
    assert late == response("after the write")
    release.set()
    assert await early == response("before the write")
    assert (await cache.lookup(1, "items")).hit == response("after the write")


async def test_when_the_first_computation_fails_the_waiting_ones_compute_their_own() -> None:
    cache = ResponseCache(MemoryBackend(), ttl_seconds=30, prefix="t:")
    release = asyncio.Event()
    calls = 0

    async def compute() -> CachedResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
            raise RuntimeError("the database went away")
        return response("retried")

    first = asyncio.create_task(cache.fetch(1, "items", compute))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.fetch(1, "items", compute))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(RuntimeError):
        await first
    assert await second == response("retried")
    assert calls == 2
