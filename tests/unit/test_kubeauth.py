"""The Kubernetes check's decisions and its memory, with the API server's answers given
(the real API server's part is tests/integration/test_kube_authorization.py)."""

from __future__ import annotations

from typing import Any

from exporter.io.kubeauth import KubeAuthorizer
from exporter.io.watch import ApiError


class Api:
    """Answers reviews as an API server that knows one token and grants one path."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.down = False

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        self.calls.append(path.rsplit("/", 1)[-1])
        if self.down:
            raise ApiError(503, "ServiceUnavailable", "etcd is away")
        if path.endswith("tokenreviews"):
            ok = body["spec"]["token"] == "good"
            return {"status": {"authenticated": ok, "user": {
                "username": "system:serviceaccount:mon:prometheus", "uid": "u1",
                "groups": ["system:serviceaccounts"], "extra": {"k": ["v"]}} if ok else {}}}
        spec = body["spec"]
        assert spec["extra"] == {"k": ["v"]} and spec["uid"] == "u1"
        return {"status": {"allowed": spec["nonResourceAttributes"] == {
            "path": "/metrics", "verb": "get"}}}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_decisions_and_their_memory() -> None:
    api, clock = Api(), Clock()
    check = KubeAuthorizer(api, ttl=60, size=2, clock=clock)  # type: ignore[arg-type]
    assert await check.decide(None, "/metrics") == 401
    assert await check.decide("Basic eDp5", "/metrics") == 401
    assert api.calls == []  # nothing to ask about
    assert await check.decide("Bearer good", "/metrics") == 200
    assert await check.decide("Bearer good", "/status") == 403
    # Checked as /status: RBAC's defaults open /api/* to every authenticated user.
    assert await check.decide("Bearer good", "/api/v1/status") == 403
    assert await check.decide("Bearer bad", "/metrics") == 401
    assert api.calls == ["tokenreviews", "subjectaccessreviews", "subjectaccessreviews",
                         "tokenreviews"]  # /api/v1/status came from /status's answer
    api.calls.clear()
    for _ in range(3):
        assert await check.decide("Bearer good", "/metrics") == 200
        assert await check.decide("Bearer bad", "/metrics") == 401
    assert api.calls == []  # remembered, the refusals too
    clock.now = 61
    assert await check.decide("Bearer good", "/metrics") == 200
    assert api.calls == ["tokenreviews", "subjectaccessreviews"]


async def test_an_api_server_that_cannot_answer_lets_nothing_through() -> None:
    api = Api()
    api.down = True
    check = KubeAuthorizer(api)  # type: ignore[arg-type]
    assert await check.decide("Bearer good", "/metrics") == 401
