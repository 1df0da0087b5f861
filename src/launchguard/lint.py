"""Lint one response's caching and security headers: pure Python, no web framework.

Usage::

    from launchguard.lint import ResponseFacts, lint, shape_key

    facts = ResponseFacts(
        method="GET",
        status=200,
        scheme="https",
        path="/account",
        request_has_authorization=False,
        request_has_cookie=True,
        headers=(
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "public, max-age=600"),
            ("Set-Cookie", "sessionid=...; Path=/; HttpOnly"),
        ),
    )
    for finding in lint(facts, cdn="cloudflare"):
        print(finding.rule.severity, finding.rule.id, finding.detail)
    # error shared-cache-set-cookie cookie 'sessionid'
    # ...

    verdicts: dict[tuple[object, ...], list[Finding]] = {}
    key = shape_key(facts)          # equal keys give equal verdicts (for one ``cdn``)
    if key not in verdicts:
        verdicts[key] = lint(facts)

What is checked (see :data:`RULES` for every rule, its reason and a fix per framework):

* caching: responses that a shared cache may store while setting a cookie (the case REDbot and
  httplint miss) or answering a request with ``Cookie`` / ``Authorization``;
  ``CDN-Cache-Control`` that undoes ``private`` / ``no-store``; no explicit freshness where
  caches apply heuristics (RFC 9111 section 4.2.2) or Cloudflare default edge TTLs;
  ``Cache-Control`` syntax and conflicts (after httplint); ``Expires``, ``Pragma``, ``Vary``;
  HTML cached too long (webhint), static assets cached too briefly (Lighthouse), fingerprinted
  assets without ``immutable``; HTML / JSON that Cloudflare only caches with a Cache Rule;
* security (after the Mozilla HTTP Observatory): HSTS, ``X-Content-Type-Options``, frame
  protection, CSP, ``Referrer-Policy`` and cookie attributes.

A finding's ``detail`` names a directive, a number or a cookie name, never a header value that
could hold a secret. :func:`lint` never raises on malformed input and runs in time linear in
the size of the headers. It depends only on :func:`shape_key`, which drops what changes per
request (cookie values, dates, ETags, CSP nonces) so that a route's verdicts can be cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

__all__ = ["RULES", "Finding", "ResponseFacts", "Rule", "Severity", "lint", "shape_key"]

Severity = Literal["error", "warning", "info"]
_SECURITY_PREFIXES = ("hsts-", "nosniff-", "frame-", "csp-", "referrer-", "cookie-")
Cdn = Literal["cloudflare", "generic", "none"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One lint rule: a stable kebab-case ``id``, its severity, and how to fix it."""

    id: str
    severity: Severity
    message: str
    why: str
    fix: dict[str, str]

    @property
    def category(self) -> Literal["cache", "security"]:
        """``security`` for the Observatory-style header and cookie rules, else ``cache``."""
        return "security" if self.id.startswith(_SECURITY_PREFIXES) else "cache"


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired, with a short ``detail`` that never holds a header value."""

    rule: Rule
    detail: str


@dataclass(frozen=True, slots=True)
class ResponseFacts:
    """What :func:`lint` needs to know about one request/response pair."""

    method: str
    status: int
    scheme: str
    path: str
    request_has_authorization: bool
    request_has_cookie: bool
    headers: tuple[tuple[str, str], ...]


def _rule(
    id: str, severity: Severity, message: str, why: str, django: str, flask: str, fastapi: str
) -> Rule:
    return Rule(id, severity, message, why, {"django": django, "flask": flask, "fastapi": fastapi})


_CC_DJANGO = "@cache_control(...) or patch_cache_control(response, ...)"
_CC_FLASK = "response.cache_control.<directive> = ... (or the Cache-Control header)"
_CC_FASTAPI = 'response.headers["Cache-Control"] = "..."'
_PRIV_DJANGO = "@cache_control(private=True) or @never_cache on the view"
_PRIV_FLASK = 'response.cache_control.private = True (or response.headers["Cache-Control"])'
_PRIV_FASTAPI = 'response.headers["Cache-Control"] = "private, no-cache"'
_SEC_DJANGO = "SecurityMiddleware settings (SECURE_*) or django-csp"
_SEC_FLASK = "flask-talisman, or set the header in an after_request hook"
_SEC_FASTAPI = "a middleware that sets the header on every response (e.g. secure package)"
_COOKIE_DJANGO = "SESSION_COOKIE_* / CSRF_COOKIE_* settings, or set_cookie(..., secure=...)"
_COOKIE_FLASK = "SESSION_COOKIE_* config, or response.set_cookie(..., secure=...)"
_COOKIE_FASTAPI = "response.set_cookie(..., secure=True, httponly=True, samesite='lax')"

_RULE_LIST = (
    # -- caching: who may store it ------------------------------------------------------------
    _rule(
        "shared-cache-set-cookie",
        "error",
        "A response that shared caches may store sets a cookie.",
        "Set-Cookie does not stop a CDN or proxy from storing a response (RFC 9111 section 7.3);"
        " the next visitor receives the stored cookie, often someone else's session.",
        _PRIV_DJANGO + "; or move the cookie to an uncached response",
        _PRIV_FLASK + "; or move the cookie to an uncached response",
        _PRIV_FASTAPI + "; or move the cookie to an uncached response",
    ),
    _rule(
        "personalized-shared-cacheable",
        "warning",
        "A response to a request with Cookie or Authorization may be stored by shared caches.",
        "Personalised content stored by a CDN is served to other users; with Authorization a"
        " shared cache stores it only because of public, s-maxage or must-revalidate"
        " (RFC 9111 section 3.5).",
        _PRIV_DJANGO + " (or vary_on_cookie)",
        _PRIV_FLASK,
        _PRIV_FASTAPI,
    ),
    _rule(
        "cdn-cache-control-overrides",
        "error",
        "CDN-Cache-Control lets the CDN store what Cache-Control forbids (private / no-store).",
        "CDN-Cache-Control and Cloudflare-CDN-Cache-Control replace Cache-Control at the edge"
        " (RFC 9213), so a private response is stored and shared there.",
        "remove the CDN-Cache-Control header or make it private / no-store too",
        "remove the CDN-Cache-Control header or make it private / no-store too",
        "remove the CDN-Cache-Control header or make it private / no-store too",
    ),
    _rule(
        "no-explicit-freshness",
        "warning",
        "No explicit caching policy on a response caches may store heuristically.",
        "Without max-age, s-maxage, Expires, no-cache or no-store, browsers and proxies guess a"
        " lifetime (RFC 9111 section 4.2.2) and Cloudflare applies its default edge TTLs.",
        _CC_DJANGO,
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    # -- caching: Cache-Control syntax (httplint CC_*) -----------------------------------------
    _rule(
        "cc-bad-value",
        "error",
        "A Cache-Control directive has a value of the wrong type (max-age=abc).",
        "Caches ignore the directive, so the response is cached differently than intended.",
        _CC_DJANGO,
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    _rule(
        "cc-missing-value",
        "error",
        "A Cache-Control directive needs a value (max-age without =N).",
        "Caches ignore the directive.",
        _CC_DJANGO,
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    _rule(
        "cc-quoted-value",
        "warning",
        'A numeric Cache-Control value is quoted (max-age="60").',
        "Senders must not quote delta-seconds (RFC 9111 section 5.2); some caches ignore it.",
        _CC_DJANGO,
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    _rule(
        "cc-unexpected-value",
        "warning",
        "A Cache-Control flag has a value (no-store=1).",
        "The directive takes no argument; some caches ignore it.",
        _CC_DJANGO,
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    _rule(
        "cc-duplicate",
        "warning",
        "A Cache-Control directive appears more than once.",
        "Caches may use either instance, so behaviour is unpredictable.",
        _CC_DJANGO + " (once per response)",
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    _rule(
        "cc-value-too-large",
        "warning",
        "A Cache-Control delta-seconds value is over 2^31.",
        "Some caches cannot hold the value; RFC 9111 says to send 2147483648 at most.",
        "use max-age=31536000 (one year)",
        "use max-age=31536000 (one year)",
        "use max-age=31536000 (one year)",
    ),
    _rule(
        "cc-miscapitalized",
        "warning",
        "A Cache-Control directive is not lower case (Max-Age).",
        "Directive names are case-insensitive, but some caches only recognise lower case.",
        _CC_DJANGO,
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    _rule(
        "cc-conflicting",
        "warning",
        "Cache-Control directives conflict (no-store or no-cache with freshness).",
        "no-store overrides everything and no-cache overrides freshness directives, so the"
        " response is not cached the way the other directives suggest.",
        _CC_DJANGO + " with one consistent policy",
        _CC_FLASK,
        _CC_FASTAPI,
    ),
    _rule(
        "cc-public-private",
        "error",
        "Cache-Control has both public and private.",
        "Conservative caches honour private, others may not: personal data can be shared.",
        _PRIV_DJANGO,
        _PRIV_FLASK,
        _PRIV_FASTAPI,
    ),
    _rule(
        "no-cache-without-validator",
        "warning",
        "no-cache without ETag or Last-Modified.",
        "Every reuse must be revalidated, and without a validator that means a full download.",
        "ConditionalGetMiddleware or @etag / @last_modified",
        "response.add_etag() and response.make_conditional(request)",
        'set response.headers["ETag"] and answer If-None-Match with 304',
    ),
    # -- caching: other fields -----------------------------------------------------------------
    _rule(
        "expires-invalid",
        "warning",
        "Expires is not an HTTP date.",
        "Caches treat an invalid Expires as already expired (RFC 9111 section 5.3).",
        "use Cache-Control max-age instead (or django.utils.http.http_date)",
        "use Cache-Control max-age instead (or werkzeug.http.http_date)",
        "use Cache-Control max-age instead (or email.utils.format_datetime(..., usegmt=True))",
    ),
    _rule(
        "expires-zero",
        "info",
        "Expires: 0 (already expired).",
        "Valid but legacy: it means stale at once; Cache-Control says it clearly.",
        "@never_cache or @cache_control(no_cache=True)",
        "response.cache_control.no_cache = True",
        'response.headers["Cache-Control"] = "no-cache"',
    ),
    _rule(
        "pragma-deprecated",
        "info",
        "Pragma in a response.",
        "Pragma is deprecated (RFC 9111 section 5.4) and has no defined meaning in responses.",
        "drop Pragma; use Cache-Control",
        "drop Pragma; use Cache-Control",
        "drop Pragma; use Cache-Control",
    ),
    _rule(
        "vary-star",
        "warning",
        "Vary: * makes the response effectively uncacheable.",
        "No cache can match a later request to it.",
        "@vary_on_headers with the real request headers",
        'response.vary.add("...") with the real request headers',
        'response.headers["Vary"] = "<real request headers>"',
    ),
    _rule(
        "vary-user-agent",
        "warning",
        "Vary: User-Agent fragments caches.",
        "Caches store one copy per User-Agent string, or give up storing it.",
        "serve variants from different URLs; drop User-Agent from Vary",
        "serve variants from different URLs; drop User-Agent from Vary",
        "serve variants from different URLs; drop User-Agent from Vary",
    ),
    _rule(
        "vary-host",
        "info",
        "Vary: Host is unnecessary.",
        "The host is already part of the cache key; some caches refuse responses with Vary.",
        "drop Host from Vary",
        "drop Host from Vary",
        "drop Host from Vary",
    ),
    _rule(
        "vary-complex",
        "info",
        "Vary lists more than three request headers.",
        "Each header multiplies the variants; caches hit rarely. Cloudflare ignores all but"
        " Accept-Encoding.",
        "vary on fewer headers",
        "vary on fewer headers",
        "vary on fewer headers",
    ),
    _rule(
        "html-cached-too-long",
        "warning",
        "HTML cached for more than 180 seconds without no-cache.",
        "Users keep stale pages that reference assets which no longer exist (webhint http-cache).",
        "@cache_control(no_cache=True) or max_age<=180 on HTML views",
        "response.cache_control.no_cache = True on HTML responses",
        'response.headers["Cache-Control"] = "no-cache" on HTML responses',
    ),
    _rule(
        "static-asset-short-ttl",
        "warning",
        "Static asset cached for less than 96 days.",
        "Repeat visits download it again (Lighthouse 'efficient cache policy').",
        "ManifestStaticFilesStorage / WhiteNoise (max-age one year on hashed names)",
        "SEND_FILE_MAX_AGE_DEFAULT or send_from_directory(max_age=...) with hashed names",
        "StaticFiles subclass or middleware setting max-age=31536000 on hashed names",
    ),
    _rule(
        "fingerprinted-not-immutable",
        "info",
        "Fingerprinted asset without immutable.",
        "A hashed URL never changes content; immutable saves revalidations on reload (webhint).",
        'WhiteNoise (WHITENOISE_IMMUTABLE_FILE_TEST) or "public, max-age=31536000, immutable"',
        '"public, max-age=31536000, immutable" on hashed static files',
        '"public, max-age=31536000, immutable" on hashed static files',
    ),
    _rule(
        "cloudflare-needs-cache-rule",
        "info",
        "HTML/JSON marked cacheable that Cloudflare will not cache without a Cache Rule.",
        "Cloudflare caches by file extension only; the directives are ignored at the edge"
        " unless a Cache Rule makes the URL eligible.",
        "add a Cloudflare Cache Rule for the route, or drop the shared-cache directives",
        "add a Cloudflare Cache Rule for the route, or drop the shared-cache directives",
        "add a Cloudflare Cache Rule for the route, or drop the shared-cache directives",
    ),
    # -- security (Mozilla HTTP Observatory) ---------------------------------------------------
    _rule(
        "hsts-missing",
        "warning",
        "Strict-Transport-Security missing on an HTTPS response.",
        "Without HSTS a first request over plain HTTP can be intercepted (Observatory -20).",
        "SECURE_HSTS_SECONDS = 31536000",
        _SEC_FLASK,
        _SEC_FASTAPI,
    ),
    _rule(
        "hsts-short",
        "warning",
        "Strict-Transport-Security max-age under six months (15552000) or missing.",
        "Short HSTS lapses between visits (Observatory -10).",
        "SECURE_HSTS_SECONDS = 31536000",
        _SEC_FLASK,
        _SEC_FASTAPI,
    ),
    _rule(
        "nosniff-missing",
        "warning",
        "X-Content-Type-Options: nosniff missing.",
        "Browsers may sniff content as script or HTML (Observatory -5).",
        "SECURE_CONTENT_TYPE_NOSNIFF = True",
        _SEC_FLASK,
        _SEC_FASTAPI,
    ),
    _rule(
        "frame-protection-missing",
        "warning",
        "HTML without X-Frame-Options or CSP frame-ancestors.",
        "The page can be framed for clickjacking (Observatory -20).",
        "XFrameOptionsMiddleware (X_FRAME_OPTIONS = 'DENY')",
        _SEC_FLASK,
        _SEC_FASTAPI,
    ),
    _rule(
        "csp-missing",
        "warning",
        "HTML without Content-Security-Policy.",
        "CSP is the main defence against XSS (Observatory -25).",
        "django-csp or Django 6 ContentSecurityPolicyMiddleware",
        _SEC_FLASK,
        _SEC_FASTAPI,
    ),
    _rule(
        "csp-unsafe",
        "warning",
        "CSP allows 'unsafe-inline' scripts or any source (*).",
        "An unsafe policy does not stop injected scripts (Observatory).",
        "use nonces or hashes in script-src; no * sources",
        "use nonces or hashes in script-src; no * sources",
        "use nonces or hashes in script-src; no * sources",
    ),
    _rule(
        "referrer-policy-missing",
        "info",
        "HTML without Referrer-Policy.",
        "Browsers default to strict-origin-when-cross-origin; stating it makes it explicit.",
        "SECURE_REFERRER_POLICY = 'strict-origin-when-cross-origin'",
        _SEC_FLASK,
        _SEC_FASTAPI,
    ),
    _rule(
        "referrer-policy-unsafe",
        "warning",
        "Referrer-Policy unsafe-url or no-referrer-when-downgrade.",
        "Full URLs (paths, query tokens) leak to other sites (Observatory -5).",
        "SECURE_REFERRER_POLICY = 'strict-origin-when-cross-origin'",
        _SEC_FLASK,
        _SEC_FASTAPI,
    ),
    _rule(
        "cookie-no-secure",
        "error",
        "Cookie set over HTTPS without Secure.",
        "The cookie is also sent over plain HTTP, where it can be stolen (Observatory -40).",
        _COOKIE_DJANGO,
        _COOKIE_FLASK,
        _COOKIE_FASTAPI,
    ),
    _rule(
        "cookie-no-httponly",
        "warning",
        "Cookie without HttpOnly.",
        "Scripts (and XSS) can read it (Observatory -30); CSRF cookies are exempt.",
        _COOKIE_DJANGO,
        _COOKIE_FLASK,
        _COOKIE_FASTAPI,
    ),
    _rule(
        "cookie-no-samesite",
        "warning",
        "Cookie without SameSite.",
        "An explicit SameSite=Lax or Strict limits cross-site request forgery.",
        _COOKIE_DJANGO,
        _COOKIE_FLASK,
        _COOKIE_FASTAPI,
    ),
    _rule(
        "cookie-samesite-none-insecure",
        "error",
        "Cookie with SameSite=None but without Secure.",
        "Browsers reject it (Observatory -20).",
        _COOKIE_DJANGO,
        _COOKIE_FLASK,
        _COOKIE_FASTAPI,
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULE_LIST}
"""Every rule, by id."""

# --------------------------------------------------------------------------------------------
# Constants

_MAX_DELTA = 2147483648  # 2^31, RFC 9111 section 1.2.2
_HEURISTIC_STATUS = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
_CF_TTL_STATUS = frozenset({200, 206, 301, 302, 303, 404, 410})
_SIGNIFICANT_STATUS = _HEURISTIC_STATUS | _CF_TTL_STATUS | {304}
_CF_EXTENSIONS = frozenset(
    [
        "7z",
        "csv",
        "gif",
        "midi",
        "png",
        "tif",
        "zip",
        "avi",
        "doc",
        "gz",
        "mkv",
        "ppt",
        "tiff",
        "zst",
        "avif",
        "docx",
        "ico",
        "mp3",
        "pptx",
        "ttf",
        "apk",
        "dmg",
        "iso",
        "mp4",
        "ps",
        "webm",
        "bin",
        "ejs",
        "jar",
        "ogg",
        "rar",
        "webp",
        "bmp",
        "eot",
        "jpg",
        "otf",
        "svg",
        "woff",
        "bz2",
        "eps",
        "jpeg",
        "pdf",
        "svgz",
        "woff2",
        "class",
        "exe",
        "js",
        "pict",
        "swf",
        "xls",
        "css",
        "flac",
        "mid",
        "pls",
        "tar",
        "xlsx",
    ]
)
_STATIC_EXTENSIONS = frozenset(
    [
        "css",
        "js",
        "mjs",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "webp",
        "avif",
        "svg",
        "ico",
        "bmp",
    ]
)
_LIGHTHOUSE_MIN = 96 * 86400
_HSTS_MIN = 15552000
_HTML_MAX = 180

_FLAG_CC = frozenset(
    {
        "immutable",
        "must-revalidate",
        "must-understand",
        "no-store",
        "no-transform",
        "only-if-cached",
        "proxy-revalidate",
        "public",
    }
)
_DELTA_CC = frozenset(
    {
        "max-age",
        "max-stale",
        "min-fresh",
        "s-maxage",
        "stale-if-error",
        "stale-while-revalidate",
        "pre-check",
        "post-check",
    }
)
_KNOWN_CC = _FLAG_CC | _DELTA_CC | {"no-cache", "private"}
# Directive, and the directives it overrides; only the first match is reported (as httplint).
_CONFLICTS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "no-store",
        frozenset(
            [
                "immutable",
                "max-age",
                "must-revalidate",
                "no-cache",
                "private",
                "proxy-revalidate",
                "public",
                "s-maxage",
                "stale-if-error",
                "stale-while-revalidate",
                "pre-check",
                "post-check",
            ]
        ),
    ),
    (
        "no-cache",
        frozenset(
            [
                "immutable",
                "max-age",
                "must-revalidate",
                "proxy-revalidate",
                "s-maxage",
                "stale-if-error",
                "stale-while-revalidate",
                "pre-check",
                "post-check",
            ]
        ),
    ),
    (
        "must-revalidate",
        frozenset(
            ["immutable", "stale-if-error", "stale-while-revalidate", "pre-check", "post-check"]
        ),
    ),
)

_RELEVANT = frozenset(
    {
        "cache-control",
        "cdn-cache-control",
        "cloudflare-cdn-cache-control",
        "expires",
        "pragma",
        "vary",
        "etag",
        "last-modified",
        "content-type",
        "set-cookie",
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "referrer-policy",
    }
)

_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_MONTH_NUM = {m: i for i, m in enumerate(_MONTHS.split("|"), 1)}
_IMF = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{{2}}) ({_MONTHS}) ([0-9]{{4}}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_RFC850 = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"([0-9]{{2}})-({_MONTHS})-([0-9]{{2}}) ([0-9]{{2}}):([0-9]{{2}}):([0-9]{{2}}) GMT"
)
_ASCTIME = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ({_MONTHS}) ([ 0-9][0-9]) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})"
)
_HEX_HASH = re.compile(r"[0-9a-f]{6,64}", re.IGNORECASE)
_B64_HASH = re.compile(r"[A-Za-z0-9_]{8,32}")
_SAFE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_CSRF_NAMES = ("csrf", "xsrf")
_UNSAFE_REFERRER = frozenset({"unsafe-url", "no-referrer-when-downgrade"})
_REFERRER_TOKENS = _UNSAFE_REFERRER | {
    "no-referrer",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
}


_Cookie = tuple[str, bool, bool, str | None, bool]  # name, secure, httponly, samesite, deleting
_Csp = tuple[tuple[str, tuple[str, ...]], ...]

# --------------------------------------------------------------------------------------------
# Parsing helpers (all linear, none raise)


def _split_list(value: str) -> list[str]:
    """Split on commas outside quoted strings; strip whitespace; drop empty items."""
    items: list[str] = []
    start = 0
    in_quote = False
    escaped = False
    for idx, char in enumerate(value):
        if in_quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quote = False
        elif char == '"':
            in_quote = True
        elif char == ",":
            item = value[start:idx].strip(" \t")
            if item:
                items.append(item)
            start = idx + 1
    item = value[start:].strip(" \t")
    if item:
        items.append(item)
    return items


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _is_http_date(value: str) -> bool:
    value = value.strip(" \t")
    if len(value) > 40:
        return False
    try:
        if match := _IMF.fullmatch(value):
            day, mon, year, hh, mm, ss = match.groups()
        elif match := _RFC850.fullmatch(value):
            day, mon, year, hh, mm, ss = match.groups()
            year = "19" + year if int(year) >= 70 else "20" + year
        elif match := _ASCTIME.fullmatch(value):
            mon, day, hh, mm, ss, year = match.groups()
        else:
            return False
        datetime(int(year), _MONTH_NUM[mon], int(day), int(hh), int(mm), min(int(ss), 59))
    except ValueError:
        return False
    return True


def _directive_label(name: str) -> str:
    """A directive name safe for ``detail``: known names only (values may hold anything)."""
    return name if name in _KNOWN_CC else "unknown directive"


@dataclass(frozen=True, slots=True)
class _CacheControl:
    directives: dict[str, int | str | None]
    names: tuple[str, ...]  # lower-case names of the kept directives, in order, repeats kept
    notes: tuple[tuple[str, str], ...]  # (rule id, detail) from parsing


def _parse_cc(values: tuple[str, ...]) -> _CacheControl:
    directives: dict[str, int | str | None] = {}
    names: list[str] = []
    notes: list[tuple[str, str]] = []
    for value in values:
        for item in _split_list(value):
            raw_name, eq, raw_val = item.partition("=")
            name = raw_name.strip(" \t")
            val: str | None = raw_val.strip(" \t") if eq else None
            lname = name.lower()
            if name != lname:
                notes.append(("cc-miscapitalized", _directive_label(lname)))
            parsed: int | str | None = val
            if lname in _FLAG_CC:
                if val is not None:
                    notes.append(("cc-unexpected-value", lname))
            elif lname in _DELTA_CC:
                if val is None:
                    if lname != "max-stale":
                        notes.append(("cc-missing-value", lname))
                        continue
                else:
                    quoted = len(val) >= 2 and val[0] == val[-1] == '"'
                    digits = _unquote(val) if quoted else val
                    if not (digits.isascii() and digits.isdigit()):
                        notes.append(("cc-bad-value", lname))
                        continue
                    if quoted:
                        notes.append(("cc-quoted-value", lname))
                    stripped = digits.lstrip("0") or "0"
                    if len(stripped) > 10 or int(stripped) > _MAX_DELTA:
                        notes.append(("cc-value-too-large", lname))
                        parsed = _MAX_DELTA
                    else:
                        parsed = int(stripped)
            elif lname in ("no-cache", "private") and val is not None:
                parsed = _unquote(val).lower()
            names.append(lname)
            directives.setdefault(lname, parsed)
    return _CacheControl(directives, tuple(names), tuple(notes))


def _extension(path: str) -> tuple[str, bool]:
    """(file extension, fingerprinted?) of the last path segment."""
    segment = path.rpartition("/")[2][:256]
    stem, dot, ext = segment.rpartition(".")
    if not dot or not stem:
        return ("", False)
    ext = ext.lower()
    if not ext.isalnum() or len(ext) > 8:
        return ("", False)
    fingerprinted = False
    for part in re.split(r"[.\-]", stem):
        if _HEX_HASH.fullmatch(part) and any(c.isdigit() for c in part):
            fingerprinted = True
            break
        if (
            _B64_HASH.fullmatch(part)
            and any(c.isdigit() for c in part)
            and any(c.isupper() for c in part)
            and any(c.islower() for c in part)
        ):
            fingerprinted = True
            break
    return (ext, fingerprinted)


def _reduce_cookie(value: str) -> _Cookie:
    """(name, secure, httponly, samesite, deleting): never the cookie value."""
    first, _, attrs = value.partition(";")
    name, eq, _ = first.partition("=")
    name = name.strip(" \t") if eq else ""
    if not _SAFE_NAME.fullmatch(name):
        name = "(unnamed)" if not name else "(unusual name)"
    secure = httponly = deleting = False
    samesite: str | None = None
    for attr in attrs.split(";"):
        key, _, val = attr.partition("=")
        key = key.strip(" \t").lower()
        if key == "secure":
            secure = True
        elif key == "httponly":
            httponly = True
        elif key == "samesite":
            samesite = val.strip(" \t").lower()[:16]
        elif key == "max-age":
            deleting = val.strip(" \t") in ("0", "-1")
    return (name, secure, httponly, samesite, deleting)


def _reduce_csp(value: str) -> _Csp:
    """CSP directives we check, with nonces and hashes reduced to their kind."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for part in value.split(";"):
        tokens = part.split()
        if not tokens:
            continue
        name = tokens[0].lower()
        if name not in ("default-src", "script-src", "object-src", "frame-ancestors"):
            continue
        kept: list[str] = []
        for token in tokens[1:]:
            low = token.lower()
            if low.startswith("'nonce-"):
                kept.append("'nonce'")
            elif low.startswith(("'sha256-", "'sha384-", "'sha512-")):
                kept.append("'hash'")
            elif low in ("*", "'unsafe-inline'", "'strict-dynamic'", "'none'"):
                kept.append(low)
        out.append((name, tuple(dict.fromkeys(kept))))
    return tuple(out)


def _media_class(values: tuple[str, ...]) -> str:
    if not values:
        return ""
    media = values[-1].partition(";")[0].strip(" \t").lower()
    if media in ("text/html", "application/xhtml+xml"):
        return "html"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    return "other"


def _expires_class(value: str) -> str:
    stripped = value.strip(" \t")
    if stripped in ("0", "-1"):
        return "zero"
    return "date" if _is_http_date(stripped) else "invalid"


# --------------------------------------------------------------------------------------------
# The shape: everything lint() depends on, nothing that changes per request


class _Shape(NamedTuple):
    """Everything the rules read; a plain hashable tuple."""

    method: str
    status: int  # the status, or -(status // 100) when no rule singles it out
    https: bool
    ext: str
    fingerprinted: bool
    req_auth: bool
    req_cookie: bool
    cc: tuple[str, ...]
    cdn_cc: tuple[str, ...]
    cf_cc: tuple[str, ...]
    expires: tuple[str, ...]  # "zero" / "date" / "invalid" per Expires field
    pragma: bool
    vary: tuple[str, ...]
    has_validator: bool
    media: str  # "html", "json", "other" or ""
    cookies: tuple[_Cookie, ...]
    sts: tuple[str, ...]
    xcto: tuple[str, ...]
    xfo: tuple[str, ...]
    csp: tuple[_Csp, ...]
    referrer: tuple[str, ...]


def shape_key(facts: ResponseFacts) -> tuple[object, ...]:
    """A small hashable key of everything :func:`lint` depends on.

    Equal keys give equal verdicts for the same ``cdn``. Cookie values, dates, validators and
    CSP nonces are reduced to what the rules look at, so a steady route yields one key.
    """
    return _shape(facts)


def _shape(facts: ResponseFacts) -> _Shape:
    grouped: dict[str, list[str]] = {}
    for item in facts.headers:
        try:
            name, value = item
            lname = str(name).lower()
        except (TypeError, ValueError):
            continue
        if lname in _RELEVANT:
            grouped.setdefault(lname, []).append(str(value))

    def get(name: str) -> tuple[str, ...]:
        return tuple(grouped.get(name, ()))

    try:
        status = int(facts.status)
    except (TypeError, ValueError):
        status = 0
    bucket = status if status in _SIGNIFICANT_STATUS else -(status // 100)
    ext, fingerprinted = _extension(str(facts.path))
    return _Shape(
        method=str(facts.method).upper(),
        status=bucket,
        https=str(facts.scheme).lower() == "https",
        ext=ext,
        fingerprinted=fingerprinted,
        req_auth=bool(facts.request_has_authorization),
        req_cookie=bool(facts.request_has_cookie),
        cc=get("cache-control"),
        cdn_cc=get("cdn-cache-control"),
        cf_cc=get("cloudflare-cdn-cache-control"),
        expires=tuple(_expires_class(v) for v in get("expires")),
        pragma="pragma" in grouped,
        vary=tuple(v.lower() for v in get("vary")),
        has_validator="etag" in grouped or "last-modified" in grouped,
        media=_media_class(get("content-type")),
        cookies=tuple(_reduce_cookie(v) for v in get("set-cookie")),
        sts=get("strict-transport-security"),
        xcto=tuple(v.strip(" \t").lower()[:32] for v in get("x-content-type-options")),
        xfo=tuple(v.strip(" \t").lower()[:32] for v in get("x-frame-options")),
        csp=tuple(_reduce_csp(v) for v in get("content-security-policy")),
        referrer=tuple(v.lower() for v in get("referrer-policy")),
    )


# --------------------------------------------------------------------------------------------
# Rules, evaluated on the shape


def lint(facts: ResponseFacts, *, cdn: Cdn = "cloudflare") -> list[Finding]:
    """Lint one response; findings are ordered by rule family, deduplicated.

    ``cdn`` is the shared cache in front of the app: ``"cloudflare"`` adds its default edge
    TTLs and its by-extension caching; ``"generic"`` and ``"none"`` do not.
    """
    return _lint_shape(_shape(facts), cdn)


def _lint_shape(shape: _Shape, cdn: str) -> list[Finding]:
    method, status, https, ext = shape.method, shape.status, shape.https, shape.ext
    req_auth, req_cookie, media = shape.req_auth, shape.req_cookie, shape.media
    cc_values, cdn_cc_values, cf_cc_values = shape.cc, shape.cdn_cc, shape.cf_cc
    expires, vary_values, cookies, referrer = (
        shape.expires,
        shape.vary,
        shape.cookies,
        shape.referrer,
    )

    out: dict[tuple[str, str], None] = {}

    def add(rule_id: str, detail: str) -> None:
        out[(rule_id, detail)] = None

    cc = _parse_cc(cc_values)
    for note in cc.notes:
        add(*note)
    d = cc.directives
    cacheable_method = method in ("GET", "HEAD")

    # Conflicts and duplicates (as httplint's CC_CONFLICTING / CC_DUP)
    present = set(cc.names)
    for directive, overridden in _CONFLICTS:
        if directive in present and present & overridden:
            add("cc-conflicting", f"{directive} with {', '.join(sorted(present & overridden))}")
            break
    seen: set[str] = set()
    for name in cc.names:
        if name in seen and name in _KNOWN_CC:
            add("cc-duplicate", name)
        seen.add(name)

    vary: list[str] = []
    for value in vary_values:
        vary.extend(_split_list(value))
    vary_set = set(vary)
    vary_star = "*" in vary_set
    no_store = "no-store" in d
    private = "private" in d
    unqualified_private = private and not d["private"]
    private_fields = {f.strip(" \t") for f in str(d.get("private") or "").split(",")}
    max_age = d.get("max-age")
    s_maxage = d.get("s-maxage")
    explicit = "max-age" in d or "s-maxage" in d or bool(expires)
    valid_expires = "date" in expires
    heuristic_status = status in _HEURISTIC_STATUS

    # Who may store it
    shared_storable = cacheable_method and not no_store and not unqualified_private
    shared_storable = shared_storable and not vary_star
    if req_auth and not ("public" in d or "s-maxage" in d or "must-revalidate" in d):
        shared_storable = False
    shared_cacheable = shared_storable and (
        "public" in d or "max-age" in d or "s-maxage" in d or valid_expires or heuristic_status
    )

    # CDN-Cache-Control overriding Cache-Control
    cdn_allows = False
    for header, values in (
        ("CDN-Cache-Control", cdn_cc_values),
        ("Cloudflare-CDN-Cache-Control", cf_cc_values),
    ):
        if not values:
            continue
        edge = _parse_cc(tuple(str(v) for v in values)).directives
        allows = (
            "no-store" not in edge
            and not ("private" in edge and not edge["private"])
            and (
                "public" in edge
                or _positive(edge.get("max-age"))
                or _positive(edge.get("s-maxage"))
            )
        )
        cdn_allows = cdn_allows or (allows and cacheable_method)
        if allows and (no_store or unqualified_private):
            add(
                "cdn-cache-control-overrides",
                f"{header} vs {'no-store' if no_store else 'private'}",
            )

    if cookies and (shared_cacheable or cdn_allows) and "set-cookie" not in private_fields:
        names = ", ".join(sorted({repr(c[0]) for c in cookies if isinstance(c, tuple)}))
        add("shared-cache-set-cookie", f"cookie {names}"[:200])

    if req_auth and shared_storable and not private:
        which = next(x for x in ("public", "must-revalidate", "s-maxage") if x in d)
        add("personalized-shared-cacheable", f"Authorization request, {which}")
    elif (
        req_cookie
        and not req_auth
        and shared_storable
        and ext not in _STATIC_EXTENSIONS
        and "cookie" not in vary_set
        and (
            "public" in d
            or _positive(max_age)
            or _positive(s_maxage)
            or (valid_expires and "max-age" not in d)
        )
    ):
        add("personalized-shared-cacheable", "Cookie request, explicitly cacheable")

    # Freshness
    cf_default = cdn == "cloudflare" and ext in _CF_EXTENSIONS and status in _CF_TTL_STATUS
    if (
        cacheable_method
        and not vary_star
        and not no_store
        and "no-cache" not in d
        and not explicit
        and (heuristic_status or cf_default)
    ):
        reason = f"status {status}" if heuristic_status else f"Cloudflare default TTL for .{ext}"
        add("no-explicit-freshness", reason)

    if "public" in d and private and not no_store and not vary_star:
        add("cc-public-private", "public with private")

    storable_for_validation = (
        "public" in d or private or valid_expires or "max-age" in d or "s-maxage" in d
    ) or heuristic_status
    if (
        "no-cache" in d
        and not no_store
        and not shape.has_validator
        and not vary_star
        and cacheable_method
        and storable_for_validation
    ):
        add("no-cache-without-validator", "no-cache")

    for kind in expires:
        if kind == "zero":
            add("expires-zero", "Expires: 0")
        elif kind == "invalid":
            add("expires-invalid", "Expires is not an HTTP date")
    if shape.pragma:
        add("pragma-deprecated", "Pragma")

    if vary_star:
        add("vary-star", "Vary: *")
    if "user-agent" in vary_set:
        add("vary-user-agent", "Vary: User-Agent")
    if "host" in vary_set:
        add("vary-host", "Vary: Host")
    if len(vary_set) > 3:
        add("vary-complex", f"{len(vary_set)} headers")

    # Content-specific freshness (webhint, Lighthouse)
    ok_status = 200 <= status < 300
    if (
        media == "html"
        and cacheable_method
        and isinstance(max_age, int)
        and max_age > _HTML_MAX
        and "no-cache" not in d
        and not no_store
    ):
        add("html-cached-too-long", f"max-age={max_age}")
    if ext in _STATIC_EXTENSIONS and cacheable_method and ok_status:
        lifetime = max_age if isinstance(max_age, int) else None
        if no_store or "no-cache" in d:
            lifetime = 0
        if lifetime is not None and lifetime < _LIGHTHOUSE_MIN:
            add("static-asset-short-ttl", f".{ext} cached {lifetime} s")
        if shape.fingerprinted and "immutable" not in d and not no_store:
            add("fingerprinted-not-immutable", f"fingerprinted .{ext}")

    if (
        cdn == "cloudflare"
        and media in ("html", "json")
        and cacheable_method
        and ext not in _CF_EXTENSIONS
        and shared_storable
        and not cdn_cc_values
        and not cf_cc_values
        and ("public" in d or _positive(s_maxage) or (_positive(max_age) and not private))
    ):
        add("cloudflare-needs-cache-rule", f"{media.upper()} with shared caching")

    # Security headers
    if https:
        if not shape.sts:
            add("hsts-missing", "Strict-Transport-Security")
        else:
            hsts_age = _hsts_max_age(shape.sts[0])
            if hsts_age is None:
                add("hsts-short", "no valid max-age")
            elif hsts_age < _HSTS_MIN:
                add("hsts-short", f"max-age={hsts_age}")
    if status != 304 and "nosniff" not in shape.xcto:
        add("nosniff-missing", "X-Content-Type-Options")

    if media == "html" and status != 304:
        directives = [item for policy in shape.csp for item in policy]
        has_frame_ancestors = any(name == "frame-ancestors" for name, _ in directives)
        if not has_frame_ancestors and not ({"deny", "sameorigin"} & set(shape.xfo)):
            add("frame-protection-missing", "X-Frame-Options / frame-ancestors")
        if not shape.csp:
            add("csp-missing", "Content-Security-Policy")
        else:
            detail = _csp_unsafe(directives)
            if detail:
                add("csp-unsafe", detail)
        policy_tokens = [
            t for value in referrer for t in _split_list(str(value)) if t in _REFERRER_TOKENS
        ]
        if not policy_tokens:
            add("referrer-policy-missing", "Referrer-Policy")
        elif policy_tokens[-1] in _UNSAFE_REFERRER:
            add("referrer-policy-unsafe", policy_tokens[-1])

    for cookie in cookies:
        name, secure, httponly, samesite, deleting = cookie
        if deleting:
            continue
        label = f"cookie {name!r}"
        if https and not secure:
            add("cookie-no-secure", label)
        if not httponly and not any(x in str(name).lower() for x in _CSRF_NAMES):
            add("cookie-no-httponly", label)
        if samesite is None:
            add("cookie-no-samesite", label)
        elif samesite == "none" and not secure:
            add("cookie-samesite-none-insecure", label)

    return [Finding(RULES[rule_id], detail) for rule_id, detail in out]


def _positive(value: object) -> bool:
    return isinstance(value, int) and value > 0


def _hsts_max_age(value: str) -> int | None:
    for part in value.split(";"):
        key, _, val = part.partition("=")
        if key.strip(" \t").lower() == "max-age":
            digits = _unquote(val.strip(" \t"))
            if digits.isascii() and digits.isdigit():
                stripped = digits.lstrip("0") or "0"
                return _MAX_DELTA if len(stripped) > 10 else int(stripped)
            return None
    return None


def _csp_unsafe(directives: list[tuple[str, tuple[str, ...]]]) -> str:
    sources: dict[str, tuple[str, ...]] = {}
    for name, values in directives:  # the first of a repeated directive wins in browsers
        sources.setdefault(name, values)
    script = sources.get("script-src", sources.get("default-src"))
    if script is not None:
        relaxed = "'nonce'" in script or "'hash'" in script or "'strict-dynamic'" in script
        if "'unsafe-inline'" in script and not relaxed:
            return "'unsafe-inline' in script-src"
        if "*" in script:
            return "* in script-src"
    for name in ("default-src", "object-src"):
        if "*" in sources.get(name, ()):
            return f"* in {name}"
    return ""
