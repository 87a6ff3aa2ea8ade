"""The scraper's Kubernetes identity and rights, as kube-rbac-proxy and controller-runtime's
`WithAuthenticationAndAuthorization` check them: a TokenReview of the bearer token, then a
SubjectAccessReview of `get` on the request's path as a non-resource URL (`/metrics`,
`/status`; `/api/v1/status` is checked as `/status`). Answers are remembered for `ttl`
seconds, at most `size` of each kind, so a Prometheus scraping every 15 s costs the API
server two requests a minute, not eight. The reviews are read by exporter/core/objects.py.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import aiohttp

from exporter.core.objects import (
    ReviewedUser,
    access_review,
    parse_access_review,
    parse_token_review,
)
from exporter.io.watch import ApiError, KubeApi

log = logging.getLogger(__name__)

UNAUTHENTICATED, FORBIDDEN, ALLOWED = 401, 403, 200
AUTHORIZED_AS = {"/api/v1/status": "/status"}
"""Paths checked as another: RBAC's default `system:discovery` grants `/api/*` to every
authenticated user, so `/api/v1/status` checked as itself would be open to any token (the
rig's API server showed it). The JSON is the page's content, and shares its right."""


class _Recent:
    """A bounded map whose entries last `ttl` seconds."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any:
        found = self._items.get(key)
        if found is None or found[0] < self.clock():
            self._items.pop(key, None)
            return None
        return found[1]

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = (self.clock() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class KubeAuthorizer:
    def __init__(self, api: KubeApi, ttl: float = 60.0, size: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self._users = _Recent(ttl, size, clock)
        self._rights = _Recent(ttl, size, clock)

    async def decide(self, header: str | None, path: str) -> int:
        """200, 401 or 403 for a request's Authorization header and path. An API server
        that cannot be asked is a 401 (nothing is let through on a failure) and a log line."""
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            return UNAUTHENTICATED
        token = header[7:].strip()
        path = AUTHORIZED_AS.get(path, path)
        try:
            user = await self._user(token)
            if user is None:
                return UNAUTHENTICATED
            return ALLOWED if await self._allowed(user, path) else FORBIDDEN
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.error("cannot check a scraper with the API server (%s): answering 401",
                      str(exc) or type(exc).__name__)
            return UNAUTHENTICATED

    async def _user(self, token: str) -> ReviewedUser | None:
        known = self._users.get(token)
        if known is not None:
            return known or None
        user = parse_token_review(await self.api.post(
            "/apis/authentication.k8s.io/v1/tokenreviews", {
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}}))
        self._users.put(token, user or False)
        return user

    async def _allowed(self, user: ReviewedUser, path: str) -> bool:
        known = self._rights.get((user, path))
        if known is not None:
            return bool(known)
        allowed = parse_access_review(await self.api.post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews", access_review(user, path)))
        self._rights.put((user, path), allowed)
        return allowed
