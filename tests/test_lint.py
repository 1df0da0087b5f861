# Test-only dependency: httplint (the caching notes of REDbot), used by TestHttplintOracle.
"""Header linting: every rule family, robustness, shape keys, and agreement with httplint."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launchguard.lint import RULES, Finding, ResponseFacts, lint, shape_key

DATE = ("Date", "Mon, 04 Jul 2011 09:08:06 GMT")
SECURE_HTML = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'self'; script-src 'self' 'nonce-r4nd0m'"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)


def facts(
    *headers: tuple[str, str],
    method: str = "GET",
    status: int = 200,
    scheme: str = "https",
    path: str = "/page",
    auth: bool = False,
    cookie: bool = False,
) -> ResponseFacts:
    return ResponseFacts(method, status, scheme, path, auth, cookie, tuple(headers))


def ids(*headers: tuple[str, str], cdn: str = "cloudflare", **kw: object) -> set[str]:
    return {f.rule.id for f in lint(facts(*headers, **kw), cdn=cdn)}  # type: ignore[arg-type]


def details(rule_id: str, *headers: tuple[str, str], **kw: object) -> list[str]:
    return [f.detail for f in lint(facts(*headers, **kw)) if f.rule.id == rule_id]  # type: ignore[arg-type]


class TestRules:
    def test_catalogue(self) -> None:
        """Every rule has a kebab-case id, a one-line message and a fix for each framework."""
        assert len(RULES) >= 35
        for rule_id, rule in RULES.items():
            assert rule.id == rule_id
            assert rule_id == rule_id.lower()
            assert " " not in rule_id
            assert "\n" not in rule.message
            assert rule.why
            assert set(rule.fix) == {"django", "flask", "fastapi"}

    def test_clean_html_response(self) -> None:
        """A well-configured private HTML page produces no findings."""
        found = ids(*SECURE_HTML, ("Cache-Control", "private, no-cache"), ("ETag", '"abc"'))
        assert found == set()


class TestSharedCacheSetCookie:
    def test_public_with_cookie(self) -> None:
        """public + Set-Cookie is an error naming the cookie, never its value."""
        found = lint(
            facts(("Cache-Control", "public, max-age=600"), ("Set-Cookie", "sid=S3CR3T; HttpOnly"))
        )
        hit = [f for f in found if f.rule.id == "shared-cache-set-cookie"]
        assert hit
        assert hit[0].rule.severity == "error"
        assert "sid" in hit[0].detail
        assert all("S3CR3T" not in f.detail for f in found)

    def test_heuristic_cacheable_with_cookie(self) -> None:
        """A 200 without Cache-Control is heuristically cacheable, so a cookie on it is flagged."""
        assert "shared-cache-set-cookie" in ids(("Set-Cookie", "a=b"))

    @pytest.mark.parametrize(
        "cc", ["private", "no-store", "max-age=60, private", 'public, private="Set-Cookie"']
    )
    def test_not_shared(self, cc: str) -> None:
        """private, no-store and private="Set-Cookie" keep the cookie out of shared caches."""
        assert "shared-cache-set-cookie" not in ids(("Cache-Control", cc), ("Set-Cookie", "a=b"))

    def test_cdn_cache_control_makes_it_shared(self) -> None:
        """A CDN-Cache-Control that allows storing counts as shared-cacheable."""
        found = ids(
            ("Cache-Control", "no-store"),
            ("CDN-Cache-Control", "max-age=60"),
            ("Set-Cookie", "a=b"),
        )
        assert {"shared-cache-set-cookie", "cdn-cache-control-overrides"} <= found

    def test_post_is_not_cached(self) -> None:
        """Responses to POST are not stored."""
        assert "shared-cache-set-cookie" not in ids(("Set-Cookie", "a=b"), method="POST")


class TestPersonalized:
    @pytest.mark.parametrize("cc", ["public", "s-maxage=60", "max-age=60, must-revalidate"])
    def test_authorization_opt_in(self, cc: str) -> None:
        """With Authorization, public / s-maxage / must-revalidate let shared caches store it."""
        assert "personalized-shared-cacheable" in ids(("Cache-Control", cc), auth=True)

    def test_authorization_default_private(self) -> None:
        """With Authorization and only max-age, shared caches may not store it (RFC 9111 3.5)."""
        assert "personalized-shared-cacheable" not in ids(
            ("Cache-Control", "max-age=60"), auth=True
        )

    def test_cookie_request_explicitly_cacheable(self) -> None:
        """A Cookie request answered with public max-age is flagged; Vary: Cookie is accepted."""
        assert "personalized-shared-cacheable" in ids(("Cache-Control", "max-age=60"), cookie=True)
        assert "personalized-shared-cacheable" not in ids(
            ("Cache-Control", "max-age=60"), ("Vary", "Cookie"), cookie=True
        )

    def test_cookie_on_static_asset(self) -> None:
        """Browsers send cookies for static files; that is not personalisation."""
        found = ids(("Cache-Control", "max-age=31536000"), cookie=True, path="/s/app.css")
        assert "personalized-shared-cacheable" not in found


class TestCdnCacheControl:
    @pytest.mark.parametrize("header", ["CDN-Cache-Control", "Cloudflare-CDN-Cache-Control"])
    def test_overrides_private(self, header: str) -> None:
        """An edge header allowing storage while Cache-Control says private is an error."""
        found = ids(("Cache-Control", "private"), (header, "max-age=300"))
        assert "cdn-cache-control-overrides" in found

    def test_consistent(self) -> None:
        """An edge header that is itself no-store is fine."""
        found = ids(("Cache-Control", "private"), ("CDN-Cache-Control", "no-store"))
        assert "cdn-cache-control-overrides" not in found


class TestFreshness:
    @pytest.mark.parametrize("status", [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501])
    def test_heuristic_statuses(self, status: int) -> None:
        """Statuses with heuristic freshness and no policy are warned about."""
        assert "no-explicit-freshness" in ids(status=status, cdn="none")

    @pytest.mark.parametrize("status", [201, 302, 500])
    def test_other_statuses(self, status: int) -> None:
        """Other statuses are not heuristically cacheable."""
        assert "no-explicit-freshness" not in ids(status=status, cdn="generic")

    def test_cloudflare_edge_ttl(self) -> None:
        """A 302 for a .png gets a Cloudflare default edge TTL, only with cdn='cloudflare'."""
        assert "no-explicit-freshness" in ids(status=302, path="/a.png")
        assert "no-explicit-freshness" not in ids(status=302, path="/a.png", cdn="generic")

    @pytest.mark.parametrize(
        "header",
        [
            ("Cache-Control", "max-age=0"),
            ("Cache-Control", "no-store"),
            ("Cache-Control", "no-cache"),
            ("Expires", "Mon, 04 Jul 2011 09:08:06 GMT"),
        ],
    )
    def test_explicit_policy(self, header: tuple[str, str]) -> None:
        """Any explicit policy silences the warning."""
        assert "no-explicit-freshness" not in ids(header)

    def test_only_get_and_head(self) -> None:
        """POST responses are not linted for freshness."""
        assert "no-explicit-freshness" not in ids(method="POST")


class TestCacheControlSyntax:
    @pytest.mark.parametrize(
        ("value", "rule_id"),
        [
            ("max-age=abc", "cc-bad-value"),
            ("max-age=", "cc-bad-value"),
            ("max-age=-1", "cc-bad-value"),
            ("max-age", "cc-missing-value"),
            ('max-age="60"', "cc-quoted-value"),
            ("no-store=1", "cc-unexpected-value"),
            ("public=yes", "cc-unexpected-value"),
            ("max-age=60, max-age=120", "cc-duplicate"),
            ("max-age=99999999999999999999999", "cc-value-too-large"),
            ("Max-Age=60", "cc-miscapitalized"),
        ],
    )
    def test_syntax(self, value: str, rule_id: str) -> None:
        """Each malformed directive is reported by its own rule."""
        assert rule_id in ids(("Cache-Control", value))

    def test_duplicate_across_fields(self) -> None:
        """Repeated Cache-Control fields are combined before duplicates are counted."""
        assert "cc-duplicate" in ids(("cache-control", "max-age=1"), ("CACHE-CONTROL", "max-age=2"))

    def test_detail_hides_unknown_directive_names(self) -> None:
        """A mis-capitalised unknown directive is not echoed (it is part of a header value)."""
        assert details("cc-miscapitalized", ("Cache-Control", "Sk_Live_Key")) == [
            "unknown directive"
        ]

    def test_huge_number_does_not_hit_int_limit(self) -> None:
        """A 10,000-digit max-age is 'too large', not a ValueError from int()."""
        assert "cc-value-too-large" in ids(("Cache-Control", "max-age=" + "9" * 10_000))

    def test_quoted_comma(self) -> None:
        """Commas inside quoted strings do not split directives."""
        found = ids(("Cache-Control", 'private="a, b", max-age=10'))
        assert not {"cc-bad-value", "cc-missing-value"} & found


class TestConflicts:
    @pytest.mark.parametrize(
        "value",
        [
            "no-store, max-age=60",
            "no-cache, max-age=60",
            "no-store, public",
            "no-cache, s-maxage=5",
        ],
    )
    def test_conflicting(self, value: str) -> None:
        """no-store overrides everything; no-cache overrides freshness."""
        assert "cc-conflicting" in ids(("Cache-Control", value))

    def test_public_private(self) -> None:
        """public with private is an error."""
        assert "cc-public-private" in ids(("Cache-Control", "public, private"))

    def test_no_cache_without_validator(self) -> None:
        """no-cache needs ETag or Last-Modified to be cheap."""
        assert "no-cache-without-validator" in ids(("Cache-Control", "no-cache"))
        assert "no-cache-without-validator" not in ids(
            ("Cache-Control", "no-cache"), ("ETag", '"x"')
        )


class TestOtherCachingFields:
    def test_expires(self) -> None:
        """Expires: 0 is info, garbage is a warning, an HTTP date is fine."""
        assert "expires-zero" in ids(("Expires", "0"))
        assert RULES["expires-zero"].severity == "info"
        assert "expires-invalid" in ids(("Expires", "tomorrow"))
        assert "expires-invalid" in ids(("Expires", "Mon, 31 Feb 2011 09:08:06 GMT"))
        for date in (
            "Mon, 04 Jul 2011 09:08:06 GMT",
            "Monday, 04-Jul-11 09:08:06 GMT",
            "Mon Jul  4 09:08:06 2011",
        ):
            assert not {"expires-invalid", "expires-zero"} & ids(("Expires", date))

    def test_pragma(self) -> None:
        """Pragma in a response is deprecated."""
        assert "pragma-deprecated" in ids(("Pragma", "no-cache"))

    @pytest.mark.parametrize(
        ("vary", "rule_id"),
        [
            ("*", "vary-star"),
            ("User-Agent", "vary-user-agent"),
            ("Host", "vary-host"),
            ("Accept, Accept-Language, Origin, Cookie", "vary-complex"),
        ],
    )
    def test_vary(self, vary: str, rule_id: str) -> None:
        """Vary values that defeat caches are reported."""
        assert rule_id in ids(("Vary", vary))

    def test_vary_simple(self) -> None:
        """Vary: Accept-Encoding is fine."""
        assert not {r for r in ids(("Vary", "Accept-Encoding")) if r.startswith("vary")}


class TestContentSpecificCaching:
    def test_html_too_long(self) -> None:
        """HTML with max-age over 180 s without no-cache is a warning (webhint)."""
        assert "html-cached-too-long" in ids(*SECURE_HTML, ("Cache-Control", "max-age=3600"))
        assert "html-cached-too-long" not in ids(*SECURE_HTML, ("Cache-Control", "max-age=180"))

    def test_static_short(self) -> None:
        """A stylesheet cached for a day is too short (Lighthouse 96 days)."""
        found = ids(("Cache-Control", "max-age=86400"), path="/static/site.css")
        assert "static-asset-short-ttl" in found
        found = ids(("Cache-Control", "max-age=31536000"), path="/static/site.css")
        assert "static-asset-short-ttl" not in found

    @pytest.mark.parametrize(
        "path", ["/static/app.3f9a1c.css", "/js/main-4e2b1a9c.js", "/assets/index-BqF3x9aZ.js"]
    )
    def test_fingerprinted_without_immutable(self, path: str) -> None:
        """Hash-like file names want immutable."""
        assert "fingerprinted-not-immutable" in ids(
            ("Cache-Control", "max-age=31536000"), path=path
        )
        found = ids(("Cache-Control", "max-age=31536000, immutable"), path=path)
        assert "fingerprinted-not-immutable" not in found

    @pytest.mark.parametrize("path", ["/static/app.css", "/facade.js", "/img/logo-2024.png"])
    def test_not_fingerprinted(self, path: str) -> None:
        """Ordinary names are not mistaken for hashes."""
        assert "fingerprinted-not-immutable" not in ids(("Cache-Control", "max-age=60"), path=path)

    def test_cloudflare_html(self) -> None:
        """Public HTML needs a Cloudflare Cache Rule; only reported for cdn='cloudflare'."""
        headers = (*SECURE_HTML, ("Cache-Control", "public, max-age=60"))
        assert "cloudflare-needs-cache-rule" in ids(*headers)
        assert "cloudflare-needs-cache-rule" not in ids(*headers, cdn="generic")


class TestSecurityHeaders:
    def test_hsts(self) -> None:
        """HSTS missing or shorter than six months on HTTPS; ignored on HTTP."""
        assert "hsts-missing" in ids()
        assert "hsts-missing" not in ids(scheme="http")
        assert "hsts-short" in ids(("Strict-Transport-Security", "max-age=86400"))
        assert "hsts-short" in ids(("Strict-Transport-Security", "includeSubDomains"))
        assert "hsts-short" not in ids(("Strict-Transport-Security", "max-age=15552000"))

    def test_nosniff(self) -> None:
        """X-Content-Type-Options: nosniff is expected on every response."""
        assert "nosniff-missing" in ids()
        assert "nosniff-missing" not in ids(("X-Content-Type-Options", "NoSniff"))

    def test_frame_protection(self) -> None:
        """HTML needs X-Frame-Options or CSP frame-ancestors."""
        html = ("Content-Type", "text/html")
        assert "frame-protection-missing" in ids(html)
        assert "frame-protection-missing" not in ids(html, ("X-Frame-Options", "SAMEORIGIN"))
        found = ids(html, ("Content-Security-Policy", "frame-ancestors 'none'"))
        assert "frame-protection-missing" not in found
        assert "frame-protection-missing" not in ids(("Content-Type", "application/json"))

    @pytest.mark.parametrize(
        "csp",
        [
            "default-src 'self' 'unsafe-inline'",
            "script-src 'unsafe-inline'; default-src 'self'",
            "default-src *",
            "object-src *; script-src 'self'",
        ],
    )
    def test_csp_unsafe(self, csp: str) -> None:
        """unsafe-inline scripts and * sources are unsafe."""
        assert "csp-unsafe" in ids(("Content-Type", "text/html"), ("Content-Security-Policy", csp))

    def test_csp_nonce_relaxes_unsafe_inline(self) -> None:
        """With a nonce, browsers ignore unsafe-inline (CSP level 3 fallback)."""
        csp = "script-src 'nonce-abc' 'unsafe-inline'"
        assert "csp-unsafe" not in ids(
            ("Content-Type", "text/html"), ("Content-Security-Policy", csp)
        )

    def test_csp_missing(self) -> None:
        """HTML without CSP is reported."""
        assert "csp-missing" in ids(("Content-Type", "text/html"))

    def test_referrer_policy(self) -> None:
        """Missing is info; unsafe-url and no-referrer-when-downgrade are warnings; last wins."""
        html = ("Content-Type", "text/html")
        assert "referrer-policy-missing" in ids(html)
        assert "referrer-policy-unsafe" in ids(html, ("Referrer-Policy", "unsafe-url"))
        found = ids(html, ("Referrer-Policy", "no-referrer-when-downgrade"))
        assert "referrer-policy-unsafe" in found
        found = ids(html, ("Referrer-Policy", "unsafe-url, strict-origin-when-cross-origin"))
        assert not {"referrer-policy-unsafe", "referrer-policy-missing"} & found


class TestCookies:
    def test_all_attributes_missing(self) -> None:
        """A bare cookie over HTTPS lacks Secure, HttpOnly and SameSite."""
        found = ids(("Cache-Control", "no-store"), ("Set-Cookie", "sessionid=abc"))
        assert {"cookie-no-secure", "cookie-no-httponly", "cookie-no-samesite"} <= found

    def test_good_cookie(self) -> None:
        """Secure; HttpOnly; SameSite=Lax is clean."""
        cookie = ("Set-Cookie", "sessionid=abc; Secure; HttpOnly; SameSite=Lax; Path=/")
        assert not {r for r in ids(("Cache-Control", "no-store"), cookie) if "cookie" in r}

    def test_samesite_none_insecure(self) -> None:
        """SameSite=None without Secure is rejected by browsers."""
        found = ids(("Cache-Control", "no-store"), ("Set-Cookie", "a=b; HttpOnly; SameSite=None"))
        assert "cookie-samesite-none-insecure" in found

    def test_secure_only_on_https(self) -> None:
        """Secure is not demanded over plain HTTP."""
        found = ids(("Cache-Control", "no-store"), ("Set-Cookie", "a=b"), scheme="http")
        assert "cookie-no-secure" not in found

    def test_csrf_cookie_may_be_script_readable(self) -> None:
        """CSRF cookies are read by scripts by design."""
        found = ids(
            ("Cache-Control", "no-store"), ("Set-Cookie", "csrftoken=x; Secure; SameSite=Lax")
        )
        assert "cookie-no-httponly" not in found

    def test_deletion_is_ignored(self) -> None:
        """Deleting a cookie with Max-Age=0 needs no attributes."""
        found = ids(("Cache-Control", "no-store"), ("Set-Cookie", "a=; Max-Age=0"))
        assert not {r for r in found if r.startswith("cookie-")}

    def test_detail_never_holds_value(self) -> None:
        """Details name the cookie, never its value; a nameless cookie's value is not a name."""
        found = lint(facts(("Set-Cookie", "sessionid=hunter2"), ("Set-Cookie", "t0k3nv4lu3")))
        text = " ".join(f.detail for f in found)
        assert "sessionid" in text
        assert "hunter2" not in text
        assert "t0k3nv4lu3" not in text


class TestShapeKey:
    def test_hashable_and_value_free(self) -> None:
        """The key is hashable and holds no cookie values, dates or nonces."""
        a = facts(
            ("Set-Cookie", "sid=AAAA; Secure"),
            ("Expires", "Mon, 04 Jul 2011 09:08:06 GMT"),
            ("ETag", '"v1"'),
            ("Content-Security-Policy", "script-src 'nonce-111'"),
        )
        b = facts(
            ("set-cookie", "sid=BBBB; Secure"),
            ("expires", "Tue, 05 Jul 2011 10:00:00 GMT"),
            ("etag", '"v2"'),
            ("content-security-policy", "script-src 'nonce-222'"),
        )
        assert hash(shape_key(a)) == hash(shape_key(b))
        assert shape_key(a) == shape_key(b)
        assert "AAAA" not in repr(shape_key(a))

    def test_relevant_changes_change_key(self) -> None:
        """Method, status class, scheme, flags and caching headers are in the key."""
        base = shape_key(facts(("Cache-Control", "max-age=60")))
        assert base != shape_key(facts(("Cache-Control", "max-age=61")))
        assert base != shape_key(facts(("Cache-Control", "max-age=60"), scheme="http"))
        assert base != shape_key(facts(("Cache-Control", "max-age=60"), auth=True))
        assert base != shape_key(facts(("Cache-Control", "max-age=60"), status=404))
        assert base == shape_key(facts(("Cache-Control", "max-age=60"), ("X-Request-Id", "1")))

    def test_status_bucket(self) -> None:
        """Statuses no rule singles out share a bucket."""
        assert shape_key(facts(status=418)) == shape_key(facts(status=422))
        assert shape_key(facts(status=404)) != shape_key(facts(status=422))


HEADER_NAMES = st.sampled_from(
    [
        "Cache-Control",
        "cache-control",
        "CDN-Cache-Control",
        "Cloudflare-CDN-Cache-Control",
        "Expires",
        "Pragma",
        "Vary",
        "ETag",
        "Content-Type",
        "Set-Cookie",
        "Strict-Transport-Security",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Content-Security-Policy",
        "Referrer-Policy",
        "",
        "X-Other",
    ]
)
LATIN1 = st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
TOKENS = st.lists(
    st.sampled_from(
        [
            "max-age=",
            "Max-Age",
            "no-store",
            "=",
            ",",
            ";",
            '"',
            "\\",
            "private",
            "public",
            "*",
            "1",
            "99999999999",
            "SameSite=None",
            "Secure",
            "'unsafe-inline'",
            " ",
            "\t",
            "no-cache",
        ]
    ),
    max_size=20,
).map("".join)


class TestRobustness:
    @settings(database=None, max_examples=300, deadline=None)
    @given(
        headers=st.lists(st.tuples(HEADER_NAMES | LATIN1, TOKENS | LATIN1), max_size=12),
        method=st.sampled_from(["GET", "HEAD", "POST", "get", ""]) | LATIN1,
        status=st.integers(min_value=-1000, max_value=100_000),
        path=LATIN1,
        scheme=st.sampled_from(["https", "http", "HTTPS", ""]),
        auth=st.booleans(),
        cookie=st.booleans(),
        cdn=st.sampled_from(["cloudflare", "generic", "none"]),
    )
    def test_never_raises(
        self,
        headers: list[tuple[str, str]],
        method: str,
        status: int,
        path: str,
        scheme: str,
        auth: bool,
        cookie: bool,
        cdn: str,
    ) -> None:
        """lint() and shape_key() accept any latin-1 input; equal keys give equal verdicts."""
        f = ResponseFacts(method, status, scheme, path, auth, cookie, tuple(headers))
        found = lint(f, cdn=cdn)  # type: ignore[arg-type]
        assert all(isinstance(x, Finding) for x in found)
        key = shape_key(f)
        hash(key)
        shuffled = ResponseFacts(
            method,
            status,
            scheme,
            path,
            auth,
            cookie,
            (*headers, ("X-Unrelated", "1")),
        )
        assert shape_key(shuffled) == key
        assert lint(shuffled, cdn=cdn) == found  # type: ignore[arg-type]

    def test_linear_time(self) -> None:
        """Headers 10x larger take roughly 10x longer, not 100x."""

        def run(n: int) -> float:
            value = ", ".join(["max-age=1", '"', "x=\\"] * n)
            f = facts(("Cache-Control", value), ("Vary", value), ("Set-Cookie", "a=b;" * n))
            start = time.perf_counter()
            lint(f)
            return time.perf_counter() - start

        run(100)
        small, large = min(run(2_000) for _ in range(3)), min(run(20_000) for _ in range(3))
        assert large < small * 30

    def test_huge_values(self) -> None:
        """Megabyte values and empty names are handled."""
        big = "a" * 1_000_000
        found = lint(facts(("", ""), ("Cache-Control", big), ("Expires", big), ("Set-Cookie", big)))
        assert "expires-invalid" in {f.rule.id for f in found}


# --------------------------------------------------------------------------------------------
# Oracle: httplint (REDbot's linter) on the same responses.

NOTE_TO_RULE = {
    "CC_BAD_VALUE_TYPE": "cc-bad-value",
    "CC_MISSING_VALUE": "cc-missing-value",
    "CC_QUOTED_VALUE": "cc-quoted-value",
    "CC_SHOULD_NOT_HAVE_VALUE": "cc-unexpected-value",
    "CC_MAX_AGE_TOO_LARGE": "cc-value-too-large",
    "CC_DUP": "cc-duplicate",
    "CC_MISCAP": "cc-miscapitalized",
    "CC_CONFLICTING": "cc-conflicting",
    "STORE_PRIVATE_PUBLIC_CONFLICT": "cc-public-private",
    "STORE_PUBLIC_AUTH": "personalized-shared-cacheable",
    "FRESHNESS_NO_CACHE_NO_VALIDATOR": "no-cache-without-validator",
    "FRESHNESS_HEURISTIC": "no-explicit-freshness",
    "VARY_ASTERISK": "vary-star",
    "VARY_USER_AGENT": "vary-user-agent",
    "VARY_HOST": "vary-host",
    "VARY_COMPLEX": "vary-complex",
    "REQUEST_HDR_IN_RESPONSE": "pragma-deprecated",  # only Pragma in this corpus
    "BAD_DATE_SYNTAX": "expires-bad",  # only Expires is malformed in this corpus
}
# httplint has one note for both; launchguard separates `0` (valid, expired) from garbage.
RULE_ALIASES = {"expires-invalid": "expires-bad", "expires-zero": "expires-bad"}
COVERED = set(NOTE_TO_RULE.values())

# (status, headers, request had Authorization). Statuses stay within httplint's heuristic list
# (200 203 206 300 301 410), which is narrower than RFC 9111's.
AGREE: list[tuple[int, tuple[tuple[str, str], ...], bool]] = [
    (200, (), False),
    (200, (("Cache-Control", "max-age=60"),), False),
    (200, (("Cache-Control", "max-age=abc"),), False),
    (200, (("Cache-Control", "s-maxage=x1"),), False),
    (200, (("Cache-Control", "max-age=-5"),), False),
    (200, (("Cache-Control", "max-age"),), False),
    (200, (("Cache-Control", "s-maxage"),), False),
    (200, (("Cache-Control", 'max-age="60"'),), False),
    (200, (("Cache-Control", "no-store=1"),), False),
    (200, (("Cache-Control", "public=1, max-age=5"),), False),
    (200, (("Cache-Control", "max-age=60, max-age=60"),), False),
    (200, (("Cache-Control", "max-age=60"), ("Cache-Control", "max-age=30")), False),
    (200, (("Cache-Control", "max-age=99999999999"),), False),
    (200, (("Cache-Control", "Max-Age=60"),), False),
    (200, (("Cache-Control", "NO-STORE"),), False),
    (200, (("Cache-Control", "no-store, max-age=60"),), False),
    (200, (("Cache-Control", "no-store, public"),), False),
    (200, (("Cache-Control", "no-cache, max-age=60"), ("ETag", '"a"')), False),
    (200, (("Cache-Control", "no-cache, s-maxage=60"), ("ETag", '"a"')), False),
    (200, (("Cache-Control", "must-revalidate, immutable, max-age=5"),), False),
    (200, (("Cache-Control", "public, private, max-age=5"),), False),
    (200, (("Cache-Control", "public, private"),), False),
    (200, (("Cache-Control", "no-cache"),), False),
    (200, (("Cache-Control", "no-cache"), ("ETag", '"x"')), False),
    (
        200,
        (("Cache-Control", "no-cache"), ("Last-Modified", "Mon, 04 Jul 2011 09:08:06 GMT")),
        False,
    ),
    (200, (("Cache-Control", "private"),), False),
    (203, (), False),
    (206, (("Content-Range", "bytes 0-0/10"),), False),
    (300, (), False),
    (301, (("Location", "http://example.com/"),), False),
    (410, (), False),
    (200, (("Expires", "0"),), False),
    (200, (("Expires", "soon"),), False),
    (200, (("Expires", "Mon, 04 Jul 2011 09:08:06 GMT"),), False),
    (200, (("Pragma", "no-cache"), ("Cache-Control", "no-store")), False),
    (200, (("Vary", "*"),), False),
    (200, (("Vary", "User-Agent"), ("Cache-Control", "max-age=60")), False),
    (200, (("Vary", "Host"), ("Cache-Control", "max-age=60")), False),
    (
        200,
        (("Vary", "Accept, Accept-Language, Origin, Cookie"), ("Cache-Control", "max-age=6")),
        False,
    ),
    (200, (("Vary", "Accept-Encoding"), ("Cache-Control", "max-age=60")), False),
    (200, (("Cache-Control", "public"),), True),
    (200, (("Cache-Control", "s-maxage=60"),), True),
    (200, (("Cache-Control", "max-age=60, must-revalidate"),), True),
    (200, (("Cache-Control", "max-age=60"),), True),
    (200, (("Cache-Control", "private, public"),), True),
]
# Cases only launchguard flags (httplint has no note for them).
ONLY_LAUNCHGUARD: list[tuple[tuple[tuple[str, str], ...], str]] = [
    (
        (("Cache-Control", "public, max-age=600"), ("Set-Cookie", "sid=1")),
        "shared-cache-set-cookie",
    ),
    ((("Cache-Control", "s-maxage=600"), ("Set-Cookie", "sid=1")), "shared-cache-set-cookie"),
    ((("Set-Cookie", "sid=1"),), "shared-cache-set-cookie"),
    (
        (("Expires", "Mon, 04 Jul 2011 09:08:06 GMT"), ("Set-Cookie", "sid=1")),
        "shared-cache-set-cookie",
    ),
    (
        (("Cache-Control", "private"), ("CDN-Cache-Control", "max-age=60")),
        "cdn-cache-control-overrides",
    ),
]


def _httplint() -> object:
    try:
        import httplint
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("httplint (test-only dependency) is not installed")
        pytest.skip("httplint (test-only dependency) is not installed")
    return httplint


def _httplint_rules(status: int, headers: tuple[tuple[str, str], ...], auth: bool) -> set[str]:
    httplint = _httplint()
    response = httplint.HttpResponseLinter()  # type: ignore[attr-defined]
    if auth:
        request = httplint.HttpRequestLinter()  # type: ignore[attr-defined]
        request.process_request_topline(b"GET", b"http://example.com/page", b"HTTP/1.1")
        request.process_headers([(b"Authorization", b"Bearer x")])
        request.finish_content(True)
        response.request = request
    response.process_response_topline(b"HTTP/1.1", str(status).encode(), b"OK")
    response.process_headers(
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in ((DATE), *headers)]
    )
    response.feed_content(b"")
    response.finish_content(True)
    names = {note.__class__.__name__ for note in response.notes}
    return {NOTE_TO_RULE[n] for n in names if n in NOTE_TO_RULE}


def _launchguard_rules(status: int, headers: tuple[tuple[str, str], ...], auth: bool) -> set[str]:
    found = ids(DATE, *headers, status=status, auth=auth, cdn="generic", path="/page")
    return {RULE_ALIASES.get(r, r) for r in found} & COVERED


class TestHttplintOracle:
    def test_corpus_size(self) -> None:
        """At least 40 response header sets are compared."""
        assert len(AGREE) + len(ONLY_LAUNCHGUARD) >= 40

    @pytest.mark.parametrize(("status", "headers", "auth"), AGREE)
    def test_agreement(self, status: int, headers: tuple[tuple[str, str], ...], auth: bool) -> None:
        """launchguard reports exactly the cache problems httplint's mapped notes report."""
        assert _launchguard_rules(status, headers, auth) == _httplint_rules(status, headers, auth)

    def test_every_mapped_note_is_exercised(self) -> None:
        """The corpus makes httplint emit every mapped note at least once."""
        seen: set[str] = set()
        for case in AGREE:
            seen |= _httplint_rules(*case)
        assert seen == COVERED

    @pytest.mark.parametrize(("headers", "rule_id"), ONLY_LAUNCHGUARD)
    def test_only_launchguard(self, headers: tuple[tuple[str, str], ...], rule_id: str) -> None:
        """Shared-cacheable Set-Cookie and CDN overrides: httplint is silent, launchguard not."""
        httplint = _httplint()
        response = httplint.HttpResponseLinter()  # type: ignore[attr-defined]
        response.process_response_topline(b"HTTP/1.1", b"200", b"OK")
        response.process_headers([(k.encode(), v.encode()) for k, v in (DATE, *headers)])
        response.finish_content(True)
        bad = httplint.levels.BAD  # type: ignore[attr-defined]
        caching = httplint.categories.CACHING  # type: ignore[attr-defined]
        assert not [n for n in response.notes if n.category == caching and n.level == bad]
        assert rule_id in ids(DATE, *headers, cdn="generic")
