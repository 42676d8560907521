"""Rate limits: the built-in auth limits (async ``limits``) and ``kit.limiter`` (slowapi).

:mod:`~starterkit.ratelimit.counters` keeps the counts, :mod:`~starterkit.ratelimit.dependencies`
makes FastAPI dependencies of them, and :mod:`~starterkit.ratelimit.limiter` builds the slowapi
``Limiter``.

With REDIS_URL set, counters live in Redis and every instance shares them; otherwise they live
in the process. When Redis cannot be reached, limits keep working on per-process memory (never
fail open, never 500); a warning is logged once per outage and Redis is tried again after a
short pause, so recovery is automatic.

A limit setting may hold several windows, ``"10/second;100/minute"``: a request passes only
if every window has room, and the windows are counted in the order written; the first that
refuses stops the count, so a refused request has used up room in the windows before it.

Responses of limited routes carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (Unix time at which the window frees up, as slowapi sends it); a 429
carries ``Retry-After`` in seconds. With several windows the headers describe one: on a 429
the window that refused, otherwise the one with the fewest requests left (the first written
on a tie), so ``Remaining`` never promises more than the request after this one may use.
"""
