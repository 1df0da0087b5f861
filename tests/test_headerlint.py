"""Header lint in the middleware: verdict cache, counter, log, warnings, report, hostile input."""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings
from pathlib import Path
from typing import Any
from wsgiref.simple_server import make_server

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from launchguard import ConfigError, LaunchGuard
from launchguard.headerlint import FLAG_COOKIE, FLAG_HTTPS, HeaderLinter
from launchguard.timing import Exchange
from launchguard.warnings import CacheHeaderWarning, SecurityHeaderWarning

from .asgi_util import call
from .helpers import UvicornThread, parse, scrape, series, value

LINT = "launchguard_http_lint_findings_total"
SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def guard(registry: CollectorRegistry, **options: Any) -> LaunchGuard:
    options.setdefault("access_log", False)
    return LaunchGuard(registry=registry, environ={}, **options)


def raw_app(headers: list[tuple[bytes, bytes]], status: int = 200) -> Any:
    """An ASGI app answering every request with ``headers``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def wsgi_app(headers: list[tuple[str, str]], status: str = "200 OK") -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response(status, headers)
        return [b"ok"]

    return app


def lint_counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    samples = scrape(registry)
    return {
        (labels["http_route"], labels["rule"]): value(samples, LINT, **labels)
        for labels in series(samples, LINT)
    }


def run(app: Any, path: str = "/", **extra: Any) -> list[dict[str, Any]]:
    return anyio.run(lambda: call(app, path, **extra))


COOKIE_PAGE = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"public, max-age=300"),
    (b"set-cookie", b"sessionid=abc123; Path=/; HttpOnly; SameSite=Lax"),
]


class TestThroughTheMiddleware:
    def test_findings_are_counted_per_response(self, registry: CollectorRegistry) -> None:
        """Each response with a finding counts once per rule, under its route label."""
        app = guard(registry).asgi(raw_app(COOKIE_PAGE))
        for _ in range(7):
            run(app, "/promo")
        counts = lint_counts(registry)
        assert counts[("__unmatched__", "shared-cache-set-cookie")] == 7
        assert counts[("__unmatched__", "html-cached-too-long")] == 7
        assert ("__unmatched__", "cookie-no-secure") not in counts  # plain http

    def test_a_clean_response_has_no_series(self, registry: CollectorRegistry) -> None:
        """A correct static asset yields no finding at all."""
        headers = [
            (b"content-type", b"text/css"),
            (b"cache-control", b"public, max-age=31536000, immutable"),
            (b"x-content-type-options", b"nosniff"),
        ]
        app = guard(registry).asgi(raw_app(headers))
        run(app, "/static/app.3f9a1c.css")
        assert lint_counts(registry) == {}

    def test_lint_can_be_switched_off(self, registry: CollectorRegistry) -> None:
        """header_lint=False: no linter, no series, an empty report."""
        g = guard(registry, header_lint=False)
        run(g.asgi(raw_app(COOKIE_PAGE)))
        assert g.linter is None
        assert lint_counts(registry) == {}
        assert g.findings()["routes"] == {}

    def test_ignored_rules_are_not_reported(self, registry: CollectorRegistry) -> None:
        """lint_ignore drops a rule from counts and report."""
        g = guard(registry, lint_ignore=["html-cached-too-long"])
        run(g.asgi(raw_app(COOKIE_PAGE)))
        rules = {rule for _, rule in lint_counts(registry)}
        assert "shared-cache-set-cookie" in rules
        assert "html-cached-too-long" not in rules

    def test_bad_options_fail_at_construction(self, registry: CollectorRegistry) -> None:
        """An unknown rule id or CDN profile names the option."""
        with pytest.raises(ConfigError, match="lint_ignore"):
            guard(registry, lint_ignore=["no-such-rule"])
        with pytest.raises(ConfigError, match="cdn"):
            guard(registry, cdn="akamai")
        g = LaunchGuard(
            registry=registry,
            environ={"LAUNCHGUARD_CDN": "none", "LAUNCHGUARD_LINT_IGNORE": "csp-missing,vary-host"},
        )
        assert g.config.cdn == "none"
        assert g.config.lint_ignore == ("csp-missing", "vary-host")

    def test_https_and_request_cookies_reach_the_rules(self, registry: CollectorRegistry) -> None:
        """scope scheme https and a Cookie request header change the verdict."""
        app = guard(registry).asgi(raw_app(COOKIE_PAGE))
        run(app, "/", scheme="https", headers=[(b"cookie", b"a=b")])
        rules = {rule for _, rule in lint_counts(registry)}
        assert {"cookie-no-secure", "hsts-missing", "personalized-shared-cacheable"} <= rules

    def test_forwarded_proto_only_from_trusted_proxies(self, registry: CollectorRegistry) -> None:
        """X-Forwarded-Proto: https counts only when the peer is a trusted proxy."""
        forwarded = [(b"x-forwarded-proto", b"https")]
        untrusted = guard(registry).asgi(raw_app(COOKIE_PAGE))
        run(untrusted, "/a", headers=forwarded)
        assert not any(rule == "hsts-missing" for _, rule in lint_counts(registry))
        other = CollectorRegistry()
        trusted = guard(other, trusted_proxies=["127.0.0.0/8"]).asgi(raw_app(COOKIE_PAGE))
        run(trusted, "/a", headers=forwarded)
        assert any(rule == "hsts-missing" for _, rule in lint_counts(other))

    def test_wsgi_adapter(self, registry: CollectorRegistry) -> None:
        """The WSGI adapter lints str headers, with the https scheme and Cookie request facts."""
        from werkzeug.test import Client

        headers = [(name.decode().title(), value.decode()) for name, value in COOKIE_PAGE]
        client = Client(guard(registry).wsgi(wsgi_app(headers)))
        client.get("/x", base_url="https://portal.example", headers={"Cookie": "a=b"})
        client.get("/x", base_url="https://portal.example")
        counts = lint_counts(registry)
        assert counts[("__unmatched__", "cookie-no-secure")] == 2
        assert counts[("__unmatched__", "personalized-shared-cacheable")] == 1

    def test_exception_before_the_response_is_not_linted(self, registry: CollectorRegistry) -> None:
        """No response started, nothing to lint; the exception still propagates."""

        async def broken(scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            run(guard(registry).asgi(broken))
        assert lint_counts(registry) == {}


class TestVerdictCache:
    def make(self, **options: Any) -> tuple[HeaderLinter, Exchange]:
        linter = HeaderLinter(registry=CollectorRegistry(), **options)
        exchange = Exchange("GET", 0.0)
        exchange.status = 200
        exchange.path = "/account"
        exchange.flags = FLAG_HTTPS | FLAG_COOKIE
        return linter, exchange

    def test_a_steady_route_is_linted_once(self) -> None:
        """Cookie values, dates, ETags and CSP nonces change; the cached verdict holds."""
        linter, exchange = self.make()
        for i in range(200):
            exchange.headers = [
                (b"content-type", b"text/html"),
                (b"cache-control", b"private, no-cache"),
                (b"date", f"Sat, 28 Nov 2026 10:00:{i % 60:02d} GMT".encode()),
                (b"etag", f'"{i:08x}"'.encode()),
                (b"set-cookie", f"sid={i}; Secure; HttpOnly; SameSite=Lax".encode()),
                (b"content-security-policy", f"script-src 'nonce-{i}'".encode()),
            ]
            linter.observe(exchange, "/account", 1.0 + i / 1000)
        assert len(linter._routes["/account"]) == 1
        assert len(linter._verdicts) == 1
        counts = linter.counts()
        assert counts[("/account", "hsts-missing")] == 200

    def test_counts_are_exact_across_threads(self) -> None:
        """The steady path counts without a lock; no hit is lost between threads."""
        linter, exchange = self.make()
        exchange.headers = [(b"content-type", b"text/html"), (b"cache-control", b"no-store")]

        def hammer() -> None:
            for _ in range(5_000):
                linter.observe(exchange, "/account", 1.0)

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        previous = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as possible
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(previous)
        assert linter.counts()[("/account", "hsts-missing")] == 40_000

    def test_a_hit_on_an_entry_retired_meanwhile_is_counted(self) -> None:
        """A thread finds a cached verdict, another re-lints the same key and retires it, then
        the first counts its hit on the retired entry: the hit is still counted. (The thread
        switch is forced where it would happen, by a dict whose lookup lets the other thread
        run first: the interleaving cannot be made to happen on demand any other way.)"""
        linter, exchange = self.make(revalidate=10.0)
        exchange.headers = [(b"content-type", b"text/html"), (b"cache-control", b"no-store")]
        linter.observe(exchange, "/account", 1.0)

        class OtherThreadFirst(dict[Any, Any]):
            armed = True

            def get(self, key: Any, default: Any = None) -> Any:
                entry = dict.get(self, key, default)
                if self.armed and entry is not None:
                    self.armed = False  # the other thread: the entry has expired for it
                    linter.observe(exchange, "/account", entry.until + 1.0)
                return entry

        linter._routes["/account"] = OtherThreadFirst(linter._routes["/account"])
        linter.observe(exchange, "/account", 2.0)  # finds the old entry, counts after retire
        assert linter.counts()[("/account", "hsts-missing")] == 3
        linter.observe(exchange, "/account", 12.0)
        assert linter.counts()[("/account", "hsts-missing")] == 4

    def test_a_changed_policy_is_a_new_verdict(self) -> None:
        """A different Cache-Control value is linted on its first response."""
        linter, exchange = self.make()
        exchange.headers = [(b"content-type", b"text/html"), (b"cache-control", b"no-store")]
        assert "html-cached-too-long" not in rules_of(linter.observe(exchange, "/a", 1.0))
        exchange.headers = [(b"Content-Type", b"text/html"), (b"Cache-Control", b"max-age=900")]
        assert "html-cached-too-long" in rules_of(linter.observe(exchange, "/a", 1.0))

    def test_verdicts_are_rechecked_after_revalidate(self) -> None:
        """A cookie that loses Secure behind the same fast key shows after ``revalidate``."""
        linter, exchange = self.make(revalidate=10.0)
        exchange.headers = [(b"set-cookie", b"sid=1; Secure; HttpOnly; SameSite=Lax")]
        assert "cookie-no-secure" not in rules_of(linter.observe(exchange, "/a", 1.0))
        exchange.headers = [(b"set-cookie", b"sid=1; HttpOnly; SameSite=Lax")]
        assert "cookie-no-secure" not in rules_of(linter.observe(exchange, "/a", 5.0))
        assert "cookie-no-secure" in rules_of(linter.observe(exchange, "/a", 12.0))

    def test_shapes_per_route_are_capped_and_counts_kept(self) -> None:
        """1,000 distinct shapes on one route keep at most max_shapes entries; no count lost."""
        linter, exchange = self.make(max_shapes=8)
        for i in range(1000):
            exchange.headers = [(b"cache-control", f"max-age={i}".encode())]
            linter.observe(exchange, "/a", 1.0)
        assert len(linter._routes["/a"]) == 8
        assert linter.counts()[("/a", "hsts-missing")] == 1000

    def test_routes_are_capped(self) -> None:
        """Past max_routes, responses are linted but not remembered."""
        linter, exchange = self.make(max_routes=3)
        exchange.headers = [(b"content-type", b"text/html")]
        for i in range(50):
            assert linter.observe(exchange, f"/r{i}", 1.0)
        assert len(linter._routes) == 3

    def test_unusual_header_spellings_are_learned_once(self) -> None:
        """Names in any case (Django sends Content-Type) map to the same rules."""
        linter, exchange = self.make()
        exchange.headers = [(b"CACHE-CONTROL", b"public, max-age=60"), (b"Set-Cookie", b"a=b")]
        assert "shared-cache-set-cookie" in rules_of(linter.observe(exchange, "/a", 1.0))
        exchange.headers = [("Cache-Control", "public, max-age=60"), ("set-cookie", "a=b")]
        assert "shared-cache-set-cookie" in rules_of(linter.observe(exchange, "/b", 1.0))


def rules_of(findings: Any) -> set[str]:
    return {finding.rule.id for finding in findings}


class TestFindingsOut:
    def test_logged_once_per_route_and_rule_per_interval(
        self, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Fifty identical responses: one structured warning per rule."""
        app = guard(registry).asgi(raw_app(COOKIE_PAGE))
        with caplog.at_level(logging.WARNING, logger="launchguard.lint"):
            for _ in range(50):
                run(app, "/promo")
        records = [r for r in caplog.records if r.name == "launchguard.lint"]
        rules = [r.launchguard_lint["rule"] for r in records]  # type: ignore[attr-defined]
        assert sorted(rules) == sorted(set(rules))
        assert "shared-cache-set-cookie" in rules
        record = next(r for r in records if "shared-cache-set-cookie" in r.getMessage())
        assert record.launchguard_lint["route"] == "__unmatched__"  # type: ignore[attr-defined]
        assert record.launchguard_lint["severity"] == "error"  # type: ignore[attr-defined]

    def test_warnings_for_test_suites(self, registry: CollectorRegistry) -> None:
        """warn_findings=True raises cache and security findings as their own categories."""
        app = guard(registry, warn_findings=True).asgi(raw_app(COOKIE_PAGE))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(app, "/promo", scheme="https")
        categories = {w.category for w in caught}
        assert {CacheHeaderWarning, SecurityHeaderWarning} <= categories
        texts = [str(w.message) for w in caught if w.category is CacheHeaderWarning]
        assert any("shared-cache-set-cookie" in text for text in texts)

    def test_warnings_become_errors_with_filterwarnings(self, registry: CollectorRegistry) -> None:
        """A suite's filterwarnings=error turns a finding into a failing request."""
        app = guard(registry, warn_findings=True).asgi(raw_app(COOKIE_PAGE))
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheHeaderWarning)
            with pytest.raises(CacheHeaderWarning):
                run(app, "/promo")

    def test_no_warnings_by_default(self, registry: CollectorRegistry) -> None:
        """Production default: findings go to logs and metrics only."""
        app = guard(registry).asgi(raw_app(COOKIE_PAGE))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            run(app, "/promo")

    def test_report(self, registry: CollectorRegistry) -> None:
        """guard.findings(): per route the rules, counts, first/last seen, a masked example."""
        g = guard(registry, access_log=True)  # the access log's facts include the query
        headers = [*COOKIE_PAGE, (b"x-debug", SECRET.encode())]
        cookie = (b"set-cookie", f"token={SECRET}; Path=/".encode())
        app = g.asgi(raw_app([*headers, cookie]))
        for _ in range(3):
            run(app, "/promo", query_string=f"access_token={SECRET}".encode())
        report = g.findings()
        text = json.dumps(report)
        assert SECRET not in text
        rules = {entry["rule"]: entry for entry in report["routes"]["__unmatched__"]}
        entry = rules["shared-cache-set-cookie"]
        assert entry["count"] == 3
        assert entry["severity"] == "error"
        assert entry["category"] == "cache"
        assert entry["first_seen"] <= entry["last_seen"]
        assert set(entry["fix"]) == {"django", "flask", "fastapi"}
        example = entry["example"]
        assert example["path"].startswith("/promo?access_token=[REDACTED")
        cookies = [value for name, value in example["headers"] if name == "set-cookie"]
        assert cookies[0].startswith("sessionid=[REDACTED]; Path=/")
        assert all(name != "x-debug" for name, _ in example["headers"])  # irrelevant headers
        severities = [e["severity"] for e in report["routes"]["__unmatched__"]]
        order = {"error": 0, "warning": 1, "info": 2}
        assert severities == sorted(severities, key=order.__getitem__)

    def test_two_guards_on_one_registry_add_up(self, registry: CollectorRegistry) -> None:
        """Guards sharing a registry share the counter family (no Duplicated timeseries)."""
        first = guard(registry).asgi(raw_app(COOKIE_PAGE))
        second = guard(registry).asgi(raw_app(COOKIE_PAGE))
        run(first, "/p")
        run(second, "/p")
        assert lint_counts(registry)[("__unmatched__", "shared-cache-set-cookie")] == 2

    def test_counts_survive_a_collected_guard(self, registry: CollectorRegistry) -> None:
        """A counter never goes down: a replaced guard's counts stay in the family (CI once
        saw a delta of 0 when the previous portal's guard was collected between scrapes)."""
        import gc

        first = guard(registry).asgi(raw_app(COOKIE_PAGE))
        for _ in range(3):
            run(first, "/p")
        assert lint_counts(registry)[("__unmatched__", "shared-cache-set-cookie")] == 3
        del first
        gc.collect()
        second = guard(registry).asgi(raw_app(COOKIE_PAGE))
        run(second, "/p")
        assert lint_counts(registry)[("__unmatched__", "shared-cache-set-cookie")] == 4
        del second
        gc.collect()
        assert lint_counts(registry)[("__unmatched__", "shared-cache-set-cookie")] == 4


class TestHostileHeaders:
    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        headers=st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        b"cache-control",
                        b"Cache-Control",
                        b"CACHE-CONTROL",
                        b"set-cookie",
                        b"vary",
                        b"expires",
                        b"content-type",
                        b"strict-transport-security",
                        b"content-security-policy",
                        b"cdn-cache-control",
                        b"pragma",
                        b"referrer-policy",
                        b"x-frame-options",
                    ]
                )
                | st.binary(min_size=1, max_size=40),
                st.binary(max_size=300),
            ),
            max_size=12,
        ),
        status=st.integers(min_value=100, max_value=599),
        path=st.text(max_size=80),
    )
    def test_random_bytes_never_raise(
        self, headers: list[tuple[bytes, bytes]], status: int, path: str
    ) -> None:
        """Random names and values, odd casing and repeats: the request completes; internal
        errors would re-raise here (the suite's RERAISE fixture)."""
        app = guard(CollectorRegistry()).asgi(raw_app(headers, status))
        messages = run(app, "/" + path.replace("\x00", ""))
        assert messages[0]["status"] == status

    def test_huge_and_repeated_values(self, registry: CollectorRegistry) -> None:
        """A 1 MB Cache-Control, 500 Set-Cookie lines and 2^70 max-age: linted, no crash."""
        headers = [
            (b"cache-control", b"max-age=" + b"9" * 1_000_000),
            (b"cache-control", b"max-age=1180591620717411303424, public"),
            *[(b"set-cookie", f"c{i}=v".encode()) for i in range(500)],
            (b"vary", b", ".join([b"x-h"] * 10_000)),
        ]
        g = guard(registry)  # kept: a guard's counts leave the scrape with the guard
        run(g.asgi(raw_app(headers)))
        rules = {rule for _, rule in lint_counts(registry)}
        assert "cc-value-too-large" in rules
        assert "shared-cache-set-cookie" in rules
        run(g.asgi(raw_app(headers)))
        assert g.linter is not None
        assert not g.linter._routes.get("__unmatched__")  # a 1 MB key is never cached
        assert not g.linter._verdicts
        assert lint_counts(registry)[("__unmatched__", "shared-cache-set-cookie")] == 2

    def test_malformed_header_items(self, registry: CollectorRegistry) -> None:
        """Items that are not (name, value) pairs are skipped by the rules."""
        linter = HeaderLinter(registry=registry)
        exchange = Exchange("GET", 0.0)
        exchange.status = 200
        exchange.path = "/"
        exchange.headers = [(b"cache-control", b"public"), (b"set-cookie", b"a=b")]
        assert linter.observe(exchange, "/", 1.0)
        exchange.headers = [(b"cache-control", 12), (None, b"x"), (b"vary", b"*")]
        linter.observe(exchange, "/", 1.0)


# -- the example portals, under real servers ------------------------------------------------


def lint_delta(url: str, paths: list[str]) -> dict[tuple[str, str], float]:
    def read() -> dict[tuple[str, str], float]:
        samples = parse(httpx.get(url + "/metrics").text)
        return {
            (labels["http_route"], labels["rule"]): value(samples, LINT, **labels)
            for labels in series(samples, LINT)
        }

    before = read()
    with httpx.Client(base_url=url, timeout=10) as client:
        for path in paths:
            assert client.get(path).status_code == 200, path
    after = read()
    return {
        key: count - before.get(key, 0)
        for key, count in after.items()
        if count > before.get(key, 0)
    }


def check_portal(delta: dict[tuple[str, str], float], uncached: str, static: str) -> None:
    """The uncached API route: no explicit policy; the promo page: a cached cookie; the
    fingerprinted static asset: nothing."""
    assert delta[(uncached, "no-explicit-freshness")] == 1
    assert delta[("/promo", "shared-cache-set-cookie")] == 1
    assert not [key for key in delta if key[0] == static]


PORTAL_PATHS = ["/reports/uncached", "/promo", "/static/app.3f9a1c.css"]


@pytest.mark.slow
class TestExamplePortals:
    def test_fastapi_portal(self, tmp_path: Path) -> None:
        """FastAPI portal under uvicorn."""
        from examples.fastapi_portal.app import create_app

        with UvicornThread(create_app(f"sqlite:///{tmp_path / 'portal.db'}")) as server:
            delta = lint_delta(server.url, PORTAL_PATHS)
        check_portal(delta, "/reports/uncached", "/static/{filename}")

    def test_flask_portal(self, tmp_path: Path) -> None:
        """Flask portal under a WSGI server."""
        from examples.flask_portal.app import create_app

        server = make_server("127.0.0.1", 0, create_app(str(tmp_path / "portal.db")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            delta = lint_delta(f"http://127.0.0.1:{server.server_port}", PORTAL_PATHS)
        finally:
            server.shutdown()
            server.server_close()
        check_portal(delta, "/reports/uncached", "/static/{filename}")
