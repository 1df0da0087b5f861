"""Mask secrets in log lines and structured events before they leave the process.

Usage::

    from launchguard.redact import Redactor, redact_text, redact_value

    redact_text("GET /cb?access_token=abc123&page=2")
    # 'GET /cb?access_token=[REDACTED:token]&page=2'
    redact_value({"db_password": "hunter2", "user": "bob"})
    # {'db_password': '[REDACTED:password]', 'user': 'bob'}

    redactor = Redactor(
        extra_patterns=[("internal_token", r"itk_[a-z0-9]{32}")],
        allowlist=[r"AKIAIOSFODNN7EXAMPLE"],
        sensitive_keys=["ssn"],
        mask="***{kind}***",
    )
    redactor.redact_text(line)

What is masked:

* more than 80 token formats recognisable by their own shape (AWS key ids, GitHub, GitLab,
  Slack, Stripe, Google, OpenAI, Anthropic, PEM private keys, JWTs, ...); see
  :data:`REDACTED_KINDS` and ``launchguard/_secret_rules.py``;
* values of sensitive keys, in dicts (:meth:`Redactor.redact_value`) and in text
  (``password=...``, ``"api_key": "..."``, ``X-Api-Key: ...``, ``?token=...``). Key names are
  normalised (camelCase split, lower case, punctuation to ``_``) and match by token, so
  ``db_password``, ``accessToken`` and ``X-Api-Key`` are sensitive while ``token_count``,
  ``max_tokens``, ``author`` and ``password_policy`` are not (see
  :meth:`Redactor.is_sensitive_key`);
* URL passwords (``scheme://user:[REDACTED:url_password]@host``; database URLs such as
  ``postgresql+psycopg://`` or ``mongodb+srv://`` say ``database_password``);
* ``Authorization`` / ``Proxy-Authorization`` credentials (the scheme word is kept), standalone
  ``Bearer`` and ``Basic`` credentials, every ``Cookie`` / ``Set-Cookie`` value (names and
  attributes kept), OAuth ``code=`` query parameters of 16 characters or more.

A mask names what it removed (``[REDACTED:github_token]``) and always covers a whole value.

Speed: a prefilter looks for the literal keywords of every rule once per text and only the rules
whose keyword occurs run. With ``google-re2`` installed (``pip install launchguard[fast]``) the
keyword search is one RE2 ``Set`` pass (about 0.8 us for a clean 150-character line, 2.5 us for
1.5 KB); without it, about 20 ``re`` scans anchored on rare substrings (about 3 us and 15 us).
Both produce identical output. All patterns run in linear time.

Known limits: an unquoted value ends at whitespace, ``&``, ``;`` or ``", "``, so an unquoted
password containing those characters is only partly masked; secrets split across separate log
calls are not recognised; key names in text are at most 64 characters.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, cast

from . import _secret_rules as _rules

__all__ = ["REDACTED_KINDS", "Redactor", "default_redactor", "redact_text", "redact_value"]

REDACTED_KINDS: tuple[str, ...] = tuple(
    dict.fromkeys([rule.kind for rule in _rules.TOKEN_RULES] + list(_rules.CONTEXT_KINDS))
)
"""Every kind name a built-in rule can put into a mask (``[REDACTED:<kind>]``)."""

Prefilter = Literal["auto", "re", "re2"]

_MAX_DEPTH = 64
_KEY_CACHE_SIZE = 4096
_PLACEHOLDER_VALUES = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "true",
        "false",
        "undefined",
        "redacted",
        "[redacted]",
        "<redacted>",
        "[filtered]",
        "<filtered>",
        "[hidden]",
        "<hidden>",
        "hidden",
    }
)
_SQL_PLACEHOLDER = re.compile(
    r"%s|\?|\$[0-9]+|:[A-Za-z_][A-Za-z0-9_]*|%\([A-Za-z_][A-Za-z0-9_]*\)s"
)
_TOKEN_SCHEMES = frozenset({"basic", "bearer", "token", "bot", "apikey", "api-key", "key", "jwt"})
_KNOWN_SCHEMES = _TOKEN_SCHEMES | {
    "digest",
    "negotiate",
    "ntlm",
    "aws4-hmac-sha256",
    "hoba",
    "mutual",
    "scram-sha-1",
    "scram-sha-256",
    "vapid",
    "dpop",
    "oauth",
    "mac",
    "hawk",
    "splunk",
    "ssws",
    "sharedkey",
    "sharedkeylite",
    "signature",
    "gsskey",
}
_AUTHZ_KEYS = frozenset({"authorization", "proxy_authorization"})
_COOKIE_KEYS = frozenset({"cookie", "set_cookie"})
_HEADER_KEYS = _AUTHZ_KEYS | _COOKIE_KEYS

_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
_KEY_CHARS_SPACE = _KEY_CHARS + " "
_CAMEL_UPPER_RUN = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_SCHEME_WORD = re.compile(r"([a-z][a-z0-9\-]*)[ \t]+(?=[^\s\"'])", re.ASCII)
_LINE_REST = re.compile(r"[^\r\n]*", re.ASCII)
_TOKEN_REST = re.compile(r"[^\s\"'<>,;]*", re.ASCII)
_COOKIE_PAIR = re.compile(
    r"[ \t]*(?P<name>[^=;\s\"'\\,]*)(?P<eq>=?)(?P<val>[^;\s\"'\\]*)(?P<semi>;?)", re.ASCII
)

# Rarity ranks for choosing the anchor character of each keyword in the pure-``re`` prefilter:
# rarer characters in typical log text first. Characters not listed rank last.
_RARITY = {
    ch: rank
    for rank, ch in enumerate(
        "~`^|\\$!@QZJXVKYWqzjxUFBGkvHMOLNDCRPySTEIbgfwA;%+*#&()[]{}<>?'"
        '_-=,umpcldhrnsiaotew"9876543210:/. '
    )
}


# Preferred anchors of the pure-``re`` prefilter (rare in log text, shared by many keywords).
_CS_ANCHORS = ("~", "J", "K", "A", "_", "-", ".")
_CI_ANCHORS = ("@", "k", "b", "ss", "cre", "srf", "sig", "uth", "pw", "code=")


def _normalize(name: str) -> str:
    """``X-Api-Key`` / ``xApiKey`` / ``X.API KEY`` -> ``x_api_key``."""
    name = _CAMEL_UPPER_RUN.sub(r"\1_\2", name)
    name = _CAMEL.sub(r"\1_\2", name)
    return _NON_ALNUM.sub("_", name.lower()).strip("_")


def _project(text: str) -> str:
    """An ASCII-lower-case copy of ``text`` with the same length (non-ASCII becomes ``?``)."""
    if text.isascii():
        return text.lower()
    return text.encode("ascii", "replace").decode("ascii").lower()


def _match_end(pattern: re.Pattern[str], text: str, pos: int, end: int | None = None) -> int:
    """Where ``pattern`` (which can match the empty string) stops when matched at ``pos``."""
    match = pattern.match(text, pos) if end is None else pattern.match(text, pos, end)
    return match.end() if match is not None else pos


def _apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace ``text[start:end]`` by each replacement; edits are sorted and do not overlap."""
    if not edits:
        return text
    parts: list[str] = []
    last = 0
    for start, end, replacement in edits:
        parts.append(text[last:start])
        parts.append(replacement)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _balanced_tail(value: str) -> str:
    """Drop closing brackets and commas that close something opened before the value."""
    while value and value[-1] in ")]}":
        opener = {")": "(", "]": "[", "}": "{"}[value[-1]]
        if value.count(opener) >= value.count(value[-1]):
            break
        value = value[:-1]
    return value


def _token_category(token: str, prev: str) -> str | None:
    """The kind a single name token makes a key (``prev`` is the token before), or ``None``."""
    t = token.rstrip("0123456789") or token
    kind = _rules.TOKEN_KINDS.get(t)
    if kind is not None:
        return kind
    if t in {"key", "keys"} and prev in {"private", "api"}:
        return "private_key" if prev == "private" else "api_key"
    for suffix, suffix_kind in _rules.SUFFIX_KINDS:
        if t.endswith(suffix):
            return suffix_kind
    qualifier = prev if t in {"key", "keys"} else t[:-3] if t.endswith("key") else ""
    if qualifier in _rules.KEY_QUALIFIERS:
        return "secret_key" if qualifier in _rules.SECRET_KEY_QUALIFIERS else "api_key"
    return None


def _re2_literal(keyword: str, ci: bool) -> str:
    out = []
    for ch in keyword:
        if ci and ch.isalpha():
            out.append(f"[{ch.upper()}{ch.lower()}]")
        else:
            out.append(f"\\x{ord(ch):02x}")
    return "".join(out)


class _Re2Prefilter:
    """Keyword presence with one RE2 ``Set`` pass (google-re2)."""

    def __init__(self, keywords: Sequence[tuple[str, bool]]) -> None:
        import re2  # type: ignore[import-not-found,import-untyped,unused-ignore]

        self._set = re2.Set.SearchSet(re2.Options())
        for text, ci in keywords:
            self._set.Add(_re2_literal(text, ci))
        self._set.Compile()

    def hits(self, text: str) -> Iterable[int] | None:
        return cast("Iterable[int] | None", self._set.Match(text.encode("utf-8", "surrogatepass")))


def _compatible(a: str, i: int, b: str, j: int) -> bool:
    """Can ``a`` anchored at index ``i`` and ``b`` at ``j`` occur at the same position?"""
    lo = max(-i, -j)
    hi = min(len(a) - i, len(b) - j)
    return all(a[i + k] == b[j + k] for k in range(lo, hi))


class _SrePrefilter:
    """Keyword presence with ``re`` scans, one per anchor string.

    Each keyword is found by an anchor (a short, rare substring of it: ``_``, ``-``, ``uth``,
    ``ss``, ...) followed by look-arounds for the rest, so a scan uses the engine's fast literal
    search and visits few candidates. Scans step one character past each hit, so no occurrence
    hides another; keywords that could match at the same anchor position never share a scan.
    Look-behinds of one width share one assertion whose alternatives start with a literal, so
    most candidates fail in a few steps.
    """

    def __init__(self, keywords: Sequence[tuple[str, bool]]) -> None:
        groups: dict[tuple[bool, str], list[tuple[int, str, int]]] = {}

        def choices(word: str, ci: bool) -> list[tuple[str, int]]:
            preferred = _CI_ANCHORS if ci else _CS_ANCHORS
            found = [
                (anchor, j)
                for anchor in preferred
                for j in range(len(word) - len(anchor) + 1)
                if word.startswith(anchor, j)
            ]
            singles = sorted(range(len(word)), key=lambda j: (_RARITY.get(word[j], 999), j))
            return found + [(word[j], j) for j in singles]

        def options(n: int) -> tuple[int, int]:
            text, ci = keywords[n]
            word = text.lower() if ci else text
            preferred = _CI_ANCHORS if ci else _CS_ANCHORS
            return sum(word.count(anchor) for anchor in preferred), -len(word)

        for n in sorted(range(len(keywords)), key=options):
            text, ci = keywords[n]
            word = text.lower() if ci else text
            for anchor, j in choices(word, ci):
                members = groups.setdefault((ci, anchor), [])
                if not any(_compatible(word, j, other, k) for _, other, k in members):
                    members.append((n, word, j))
                    break
            else:  # pragma: no cover - only for keywords that clash at every position
                groups.setdefault((ci, f"\0{n}"), []).append((n, word, 0))
        # (pattern, keyword index per group, the rarest byte of the anchor: a cheap first test)
        self._cs: list[tuple[re.Pattern[bytes], tuple[int, ...], int]] = []
        self._ci: list[tuple[re.Pattern[bytes], tuple[int, ...], int]] = []
        for (ci, anchor), members in groups.items():
            if members:
                scan = self._scan(anchor if not anchor.startswith("\0") else members[0][1], members)
                (self._ci if ci else self._cs).append(scan)

    @staticmethod
    def _scan(
        anchor: str, members: list[tuple[int, str, int]]
    ) -> tuple[re.Pattern[bytes], tuple[int, ...], int]:
        """One pattern: the anchor, then an alternative per keyword with a group to name it."""
        size = len(anchor)
        behind: dict[int, list[tuple[int, str]]] = {}
        ahead: list[tuple[int, str]] = []
        bare: list[int] = []
        for n, word, j in members:
            rest = word[j + size :]
            if j:
                part = re.escape(word[0]) + "(" + re.escape(word[1 : j + size]) + ")"
                if rest:
                    part += "(?=" + re.escape(rest) + ")"
                behind.setdefault(j + size, []).append((n, part))
            elif rest:
                ahead.append((n, re.escape(rest[0]) + "(" + re.escape(rest[1:]) + ")"))
            else:
                bare.append(n)
        alternatives: list[str] = []
        index: list[int] = [0]
        for width in sorted(behind):
            alternatives.append("(?<=" + "|".join(part for _, part in behind[width]) + ")")
            index.extend(n for n, _ in behind[width])
        if ahead:
            alternatives.append("(?=" + "|".join(part for _, part in ahead) + ")")
            index.extend(n for n, _ in ahead)
        if bare:
            alternatives.append("()")
            index.append(bare[0])
        source = re.escape(anchor) + "(?:" + "|".join(alternatives) + ")"
        probe = min(anchor.encode("utf-8"), key=lambda byte: _RARITY.get(chr(byte), 999))
        return re.compile(source.encode("utf-8")), tuple(index), probe

    def hits(self, text: str) -> Iterable[int] | None:
        data = text.encode("utf-8", "surrogatepass")
        found: set[int] = set()
        for scans, subject in ((self._cs, data), (self._ci, None)):
            if subject is None:
                subject = data.lower()
            for pattern, index, probe in scans:
                if probe not in subject:
                    continue
                match = pattern.search(subject)
                while match is not None:
                    found.add(index[match.lastindex or 0])
                    match = pattern.search(subject, match.start() + 1)
        return found


def _re2_available() -> bool:
    try:
        import re2  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


_Step = Callable[[str], str]


class Redactor:
    """Masks secrets in text and in nested values; configured once, safe to share between threads.

    ``extra_patterns``: ``(kind, regex)`` rules of your own; the named group ``secret`` is
    masked when the regex has one, else the whole match. They run before the built-in rules and
    on every text (they have no prefilter keywords).
    ``allowlist``: regexes of values that are never masked (each must match the whole value).
    ``sensitive_keys``: extra key names whose values are masked (kind ``sensitive_key``), matched
    by normalised token sequence like the built-in names.
    ``mask``: the replacement template; ``{kind}`` is replaced by the kind name.
    ``prefilter``: ``"auto"`` uses google-re2 when it is installed, ``"re"`` forces the
    pure-Python prefilter, ``"re2"`` requires google-re2. The output is the same either way.

    Invalid options raise :class:`ValueError` here rather than at the first log line.
    """

    def __init__(
        self,
        *,
        extra_patterns: Sequence[tuple[str, str]] = (),
        allowlist: Sequence[str] = (),
        sensitive_keys: Sequence[str] = (),
        mask: str = "[REDACTED:{kind}]",
        prefilter: Prefilter = "auto",
    ) -> None:
        self._mask_template = self._check_mask(mask)
        self._masks: dict[str, str] = {}
        before, found, after = mask.partition("{kind}")
        self._mask_prefix = before if found and before else mask
        self._mask_re = re.compile(
            re.escape(before) + "[A-Za-z0-9_.\\-]+" + re.escape(after) if found else re.escape(mask)
        )
        self._allow = tuple(self._compile("allowlist", n, p) for n, p in enumerate(allowlist))
        self._user_keys = self._check_keys(sensitive_keys)
        self._key_cache: dict[str, tuple[str | None, str]] = {}

        steps: list[_Step] = []
        always: list[int] = []
        keywords: dict[tuple[str, bool], set[int]] = {}

        def add(step: _Step, words: Iterable[str] = (), *, ci: bool = False) -> None:
            steps.append(step)
            for word in words:
                keywords.setdefault((word.lower() if ci else word, ci), set()).add(len(steps) - 1)

        for n, item in enumerate(extra_patterns):
            add(self._user_step(n, item))
            always.append(len(steps) - 1)
        for rule in _rules.TOKEN_RULES:
            add(self._token_step(rule), rule.keywords)
            if rule.keywords_ci:
                for word in rule.keywords_ci:
                    keywords.setdefault((word, True), set()).add(len(steps) - 1)
        words = _rules.CONTEXT_KEYWORDS
        add(self._url_step, words["url_userinfo"], ci=True)
        add(self._auth_header_step, words["authorization_header"], ci=True)
        add(self._cookie_header_step, words["cookie_header"], ci=True)
        add(self._bearer_step, words["bearer"], ci=True)
        add(self._basic_step, words["basic"], ci=True)
        add(self._code_step, words["code_param"], ci=True)
        user_words = tuple(max(tokens, key=len) for tokens, _ in self._user_keys)
        kv_words = words["key_value"] + user_words
        add(self._kv_placeholder, kv_words, ci=True)
        self._kv_id = len(steps) - 1

        self._steps = tuple(steps)
        self._always = frozenset(always)
        self._keywords = tuple(keywords)
        kv_set = {w.lower() for w in kv_words}
        self._kv_words = {
            n: word for n, (word, ci) in enumerate(self._keywords) if ci and word in kv_set
        }
        self._keyword_steps = tuple(frozenset(ids) for ids in keywords.values())
        self._prefilter = self._make_prefilter(prefilter)
        self.prefilter: Literal["re", "re2"] = (
            "re2" if isinstance(self._prefilter, _Re2Prefilter) else "re"
        )
        """The prefilter in use."""

    # ------------------------------------------------------------------ configuration checks

    @staticmethod
    def _check_mask(mask: str) -> str:
        if not isinstance(mask, str) or not mask:
            raise ValueError(f"mask must be a non-empty string, got {mask!r}")
        try:
            mask.format(kind="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"mask {mask!r} is not a valid template: only {{kind}} may appear in braces ({exc})"
            ) from None
        return mask

    @staticmethod
    def _compile(option: str, n: int, pattern: object) -> re.Pattern[str]:
        if not isinstance(pattern, str):
            raise ValueError(f"{option}[{n}] must be a regex string, got {pattern!r}")
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{option}[{n}] {pattern!r} is not a valid regex: {exc}") from None

    @staticmethod
    def _check_keys(names: Sequence[str]) -> tuple[tuple[tuple[str, ...], str], ...]:
        if isinstance(names, str):
            raise ValueError(
                f"sensitive_keys must be a sequence of names, got the string {names!r}"
            )
        out = []
        for n, name in enumerate(names):
            if not isinstance(name, str) or not _normalize(name):
                raise ValueError(f"sensitive_keys[{n}] must be a non-empty key name, got {name!r}")
            tokens = tuple(_normalize(name).split("_"))
            out.append((tokens, "".join(tokens)))
        return tuple(out)

    def _make_prefilter(self, choice: str) -> _Re2Prefilter | _SrePrefilter:
        if choice not in ("auto", "re", "re2"):
            raise ValueError(f"prefilter must be 'auto', 're' or 're2', got {choice!r}")
        if choice == "re2" or (choice == "auto" and _re2_available()):
            try:
                return _Re2Prefilter(self._keywords)
            except ImportError:
                raise ImportError(
                    "prefilter='re2' needs google-re2: install it with"
                    " `pip install launchguard[fast]` (or `pip install google-re2`)",
                    name="re2",
                ) from None
        return _SrePrefilter(self._keywords)

    # ------------------------------------------------------------------ public API

    def redact_text(self, text: str) -> str:
        """Return ``text`` with every secret replaced by its mask (``text`` itself if clean)."""
        if not isinstance(text, str):
            raise TypeError(f"redact_text() needs a str, got {type(text).__name__}")
        hits = self._prefilter.hits(text)
        if not hits:
            if not self._always:
                return text
            ids: Iterable[int] = sorted(self._always)
        else:
            selected = set(self._always)
            for k in hits:
                selected.update(self._keyword_steps[k])
            ids = sorted(selected)
        steps = self._steps
        for i in ids:
            if i == self._kv_id:
                kv_words = self._kv_words
                text = self._kv_step(text, [kv_words[k] for k in hits or () if k in kv_words])
            else:
                text = steps[i](text)
        return text

    def _redact_unfiltered(self, text: str) -> str:
        """Every rule on ``text`` regardless of the prefilter (the reference the tests compare)."""
        for i, step in enumerate(self._steps):
            is_kv = i == self._kv_id
            text = self._kv_step(text, self._kv_words.values()) if is_kv else step(text)
        return text

    def redact_value(self, obj: object) -> object:
        """Return a redacted copy of ``obj``; the caller's objects are never modified.

        * ``str``: :meth:`redact_text`.
        * mappings: a new ``dict``; the value of a sensitive key (:meth:`is_sensitive_key`) is
          masked whole (``None`` and booleans are kept; nested containers keep their shape with
          every leaf masked); other values are redacted recursively. Keys are kept as they are.
        * ``list``, ``tuple`` (named tuples keep their type), ``set``, ``frozenset``: a new
          container of the same kind with redacted items.
        * ``bytes`` / ``bytearray``: returned as they are unless, decoded as UTF-8 (or latin-1
          when not valid UTF-8), they contain a secret; then the redacted ``str`` is returned.
        * anything else (numbers, ``None``, other objects) is returned as it is.

        Reference cycles become the string ``"<cycle>"``; nesting deeper than 64 levels becomes
        ``"[REDACTED:max_depth]"`` (with the default mask).
        """
        return self._value(obj, None, 0, set())

    def leaves_alphabet(self, alphabet: str) -> bool:
        """Whether :meth:`redact_text` returns every text made only of characters in
        ``alphabet`` (ASCII) unchanged. True when there is no rule of your own (they run on every
        text) and no keyword of a built-in rule can be spelled with these characters (a rule
        runs only when one of its keywords occurs). The access log uses it to skip the scan of
        values it builds itself: timestamps, hex ids."""
        if self._always or not alphabet.isascii():
            return False
        exact = set(alphabet)
        folded = {ch.lower() for ch in alphabet}
        return not any(
            all((ch.lower() in folded) if ci else (ch in exact) for ch in word)
            for word, ci in self._keywords
        )

    def is_sensitive_key(self, name: str) -> bool:
        """Whether the value stored under key ``name`` is masked whole.

        The name is normalised (``dbPassword`` -> ``db_password``, ``X-Api-Key`` ->
        ``x_api_key``) and split into tokens. It is sensitive when a token is a secret word
        (``password``, ``passwd``, ``pwd``, ``secret``, ``token``, ``auth``, ``credential``,
        ``session``, ``cookie``, ``csrf``, ``signature``, ...), ends in one (``accesstoken``,
        ``clientsecret``), or is ``key`` after ``api``/``private``/``access``/``secret``/...,
        unless a describing token follows it (``token_count``, ``password_policy``,
        ``session_timeout``, ``secret_name``). Plural ``tokens`` (``max_tokens``) and words
        that merely start like one (``author``, ``secretary``, ``keyboard``) are not sensitive.
        Names configured in ``sensitive_keys`` always are.
        """
        return self._key_kind(name) is not None

    # ------------------------------------------------------------------ helpers

    def _mask(self, kind: str) -> str:
        mask = self._masks.get(kind)
        if mask is None:
            mask = self._masks[kind] = self._mask_template.format(kind=kind)
        return mask

    def _allowed(self, value: str) -> bool:
        return any(p.fullmatch(value) for p in self._allow)

    def _skip_value(self, value: str) -> bool:
        """Values that hide nothing: empty, placeholders, masks, ``${VAR}`` references."""
        if value.lower() in _PLACEHOLDER_VALUES or self._mask_prefix in value:
            return True
        if not value.strip("*"):
            return True
        if (value.startswith("${") or value.startswith("{{")) and value.endswith("}"):
            return True
        if _SQL_PLACEHOLDER.fullmatch(value):
            return True
        return self._allowed(value)

    def _key_kind(self, name: str) -> str | None:
        return self._key_info(name)[0]

    def _key_info(self, name: str) -> tuple[str | None, str]:
        """(kind or ``None``, normalised name), cached: key names repeat in every event."""
        cache = self._key_cache
        try:
            return cache[name]
        except KeyError:
            pass
        info = self._classify_key(name), _normalize(name)
        if len(cache) >= _KEY_CACHE_SIZE:
            cache.clear()
        cache[name] = info
        return info

    def _classify_key(self, name: str) -> str | None:
        norm = _normalize(name)
        if not norm:
            return None
        tokens = norm.split("_")
        for wanted, compact in self._user_keys:
            size = len(wanted)
            for start in range(len(tokens)):
                window = tokens[start : start + size]
                if tuple(window) == wanted or "".join(window) == compact:
                    return "sensitive_key"
            if compact in tokens:
                return "sensitive_key"
        if norm in _rules.SENSITIVE_EXACT:
            return {"set_cookie": "cookie", "connect_sid": "session", "mysql_pwd": "password"}.get(
                norm, "authorization" if norm == "proxy_authorization" else "api_key"
            )
        last = -1
        kind: str | None = None
        csrf = False
        for i, token in enumerate(tokens):
            category = _token_category(token, tokens[i - 1] if i else "")
            if category is not None:
                last, kind = i, category
                csrf = csrf or category == "csrf_token"
        if kind is None:
            return None
        if any(t in _rules.BENIGN_QUALIFIERS for t in tokens[last + 1 :]):
            return None
        if "secret" in tokens and ("aws" in tokens or "access" in tokens):
            return "aws_secret_access_key"
        if "secretaccesskey" in norm.replace("_", ""):
            return "aws_secret_access_key"
        return "csrf_token" if csrf else kind

    # ------------------------------------------------------------------ token rules

    def _user_step(self, n: int, item: tuple[str, str]) -> _Step:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(f"extra_patterns[{n}] must be a (kind, regex) pair, got {item!r}")
        kind, regex = item
        if not isinstance(kind, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", kind):
            raise ValueError(
                f"extra_patterns[{n}] kind {kind!r} must be a non-empty name of letters, digits,"
                " '_', '.' or '-'"
            )
        pattern = self._compile("extra_patterns", n, regex)
        if pattern.search("") is not None:
            raise ValueError(
                f"extra_patterns[{n}] {regex!r} matches the empty string; it must match a secret"
            )
        group: str | int = "secret" if "secret" in pattern.groupindex else 0
        return self._sub_step(pattern, kind, group, ())

    def _token_step(self, rule: _rules.TokenRule) -> _Step:
        return self._sub_step(rule.pattern, rule.kind, rule.group, rule.requires)

    def _sub_step(
        self, pattern: re.Pattern[str], kind: str, group: str | int, requires: tuple[str, ...]
    ) -> _Step:
        mask = self._mask(kind)
        prefix = self._mask_prefix
        allow = self._allow

        def replace(match: re.Match[str]) -> str:
            whole = match.group(0)
            secret = match.group(group)
            if not secret or prefix in secret or (allow and self._allowed(secret)):
                return whole
            start, end = match.span(group)
            offset = match.start()
            return whole[: start - offset] + mask + whole[end - offset :]

        def step(text: str) -> str:
            if requires:
                lower = text.lower()
                if not any(word in lower for word in requires):
                    return text
            return pattern.sub(replace, text)

        return step

    # ------------------------------------------------------------------ context rules

    def _kv_placeholder(self, text: str) -> str:  # pragma: no cover - dispatched by index
        return self._kv_step(text, self._kv_words.values())

    def _url_step(self, text: str) -> str:
        proj = _project(text)
        edits = []
        for match in _rules.URL_USERINFO_RE.finditer(proj):
            start, end = match.span("pw")
            password = text[start:end]
            if start == end or self._mask_prefix in text[match.start("user") : end]:
                continue
            if self._allowed(password):
                continue
            scheme = _rules.SCHEME_RE.search(proj, max(0, match.start() - 40), match.start())
            base = scheme.group(1).split("+")[0] if scheme else ""
            kind = "database_password" if base in _rules.DATABASE_SCHEMES else "url_password"
            edits.append((start, end, self._mask(kind)))
        return _apply_edits(text, edits)

    def _credential_kind(self, scheme: str) -> str:
        if scheme == "basic":
            return "basic_auth"
        if scheme == "bearer":
            return "bearer_token"
        return "authorization"

    @staticmethod
    def _header_value(proj: str, pos: int, line: list[int]) -> tuple[int, int, str | None]:
        """The extent of a header value at ``pos``: (start, end, quote).

        ``line`` caches the last unquoted extent ``[start, end]``: every header that starts
        inside it ends at the same line end, so a line is read once however many headers it has.
        """
        if proj.startswith('\\"', pos):
            end = _match_end(_rules.ESCAPED_BODY_RE, proj, pos + 2)
            return pos + 2, end, '\\"'
        if pos < len(proj) and proj[pos] in "\"'":
            body = _rules.DQ_BODY_RE if proj[pos] == '"' else _rules.SQ_BODY_RE
            return pos + 1, _match_end(body, proj, pos + 1), proj[pos]
        if not line[0] <= pos < line[1]:
            line[0], line[1] = pos, _match_end(_LINE_REST, proj, pos)
        return pos, line[1], None

    def _auth_header_step(self, text: str) -> str:
        proj = _project(text)
        edits: list[tuple[int, int, str]] = []
        done = 0
        line = [0, 0]
        for match in _rules.AUTH_HEADER_RE.finditer(proj):
            if match.start() < done:
                continue
            start, end, quote = self._header_value(proj, match.end(), line)
            word = _SCHEME_WORD.match(proj, start, end)
            scheme = word.group(1) if word and word.group(1) in _KNOWN_SCHEMES else ""
            cred_start = word.end() if scheme and word else start
            if quote is None and (not scheme or scheme in _TOKEN_SCHEMES):
                cred_end = _match_end(_TOKEN_REST, proj, cred_start, end)
            else:
                cred_end = end
            while cred_end > cred_start and proj[cred_end - 1] in " \t":
                cred_end -= 1
            credential = text[cred_start:cred_end]
            if cred_end <= cred_start or self._skip_value(credential):
                continue
            edits.append((cred_start, cred_end, self._mask(self._credential_kind(scheme))))
            done = cred_end
        return _apply_edits(text, edits)

    def _cookie_edits(self, text: str, proj: str, pos: int, end: int) -> list[tuple[int, int, str]]:
        edits = []
        mask = self._mask("cookie")
        while pos < end:
            pair = _COOKIE_PAIR.match(proj, pos, end)
            if pair is None or pair.end() == pos:
                break
            name, has_eq = pair.group("name"), pair.group("eq")
            if has_eq and name not in _rules.COOKIE_ATTRIBUTES:
                start, stop = pair.span("val")
            elif not has_eq and name and name not in _rules.COOKIE_ATTRIBUTES:
                start, stop = pair.span("name")
            else:
                start = stop = 0
            if stop > start and not self._skip_value(text[start:stop]):
                edits.append((start, stop, mask))
            if not pair.group("semi"):
                break
            pos = pair.end()
        return edits

    def _cookie_header_step(self, text: str) -> str:
        proj = _project(text)
        edits: list[tuple[int, int, str]] = []
        done = 0
        line = [0, 0]
        for match in _rules.COOKIE_HEADER_RE.finditer(proj):
            if match.start() < done:
                continue
            start, end, _ = self._header_value(proj, match.end(), line)
            found = self._cookie_edits(text, proj, start, end)
            if found:
                edits.extend(found)
                done = found[-1][1]
        return _apply_edits(text, edits)

    def _bearer_step(self, text: str) -> str:
        proj = _project(text)
        edits = []
        for match in _rules.BEARER_RE.finditer(proj):
            start, end = match.span("cred")
            credential = text[start:end]
            has_digit = any(c.isdigit() for c in credential)
            mixed = credential != credential.lower() and credential != credential.upper()
            if not (len(credential) >= 20 or has_digit or mixed):
                continue
            if not self._skip_value(credential):
                edits.append((start, end, self._mask("bearer_token")))
        return _apply_edits(text, edits)

    def _basic_step(self, text: str) -> str:
        proj = _project(text)
        edits = []
        for match in _rules.BASIC_RE.finditer(proj):
            start, end = match.span("cred")
            credential = text[start:end]
            try:
                decoded = base64.b64decode(credential + "=" * (-len(credential) % 4), validate=True)
                plain = decoded.decode("utf-8")
            except (binascii.Error, ValueError):
                continue
            if ":" in plain and plain.isprintable() and not self._skip_value(credential):
                edits.append((start, end, self._mask("basic_auth")))
        return _apply_edits(text, edits)

    def _code_step(self, text: str) -> str:
        proj = _project(text)
        edits = []
        for match in _rules.CODE_PARAM_RE.finditer(proj):
            start, end = match.span("v4")
            if not self._skip_value(text[start:end]):
                edits.append((start, end, self._mask("oauth_code")))
        return _apply_edits(text, edits)

    def _kv_step(self, text: str, words: Iterable[str]) -> str:
        """``key = value`` pairs whose key contains one of ``words`` (present keywords).

        Linear: the head after a keyword is bounded, each quoted value is read from its own
        opening quote, and an unquoted run is read once however many keys point into it.
        Keywords inside a value that was masked are skipped; inside a value that was kept
        (``token_url=https://idp/?client_secret=...``) they are still examined.
        """
        proj = _project(text)
        positions: list[tuple[int, int]] = []
        for word in words:
            pos = proj.find(word)
            while pos >= 0:
                positions.append((pos, len(word)))
                pos = proj.find(word, pos + 1)
        if not positions:
            return text
        positions.sort()
        head_re = _rules.KV_HEAD_RE
        edits: list[tuple[int, int, str]] = []
        done = -1
        seen: set[int] = set()
        run = (-1, -1)
        for kw_start, size in positions:
            if kw_start < done:
                continue
            head = head_re.match(proj, kw_start + size)
            if head is None or head.end("sep") in seen:
                continue
            seen.add(head.end("sep"))
            span, run = self._kv_value(proj, head.end(), run)
            if span is None:
                continue
            kind = self._kv_kind(text, proj, kw_start, head)
            if kind is None:
                continue
            value_start, value_end = span
            value = text[value_start:value_end]
            if value and value[-1] in ")]}" and proj[value_start - 1] not in "\"'":
                value = _balanced_tail(value)
                value_end = value_start + len(value)
            if value_end > value_start and not self._skip_value(value):
                edits.append((value_start, value_end, self._mask(kind)))
                done = value_end
        return _apply_edits(text, edits)

    @staticmethod
    def _kv_value(
        proj: str, pos: int, run: tuple[int, int]
    ) -> tuple[tuple[int, int] | None, tuple[int, int]]:
        """The value span at ``pos`` (``None`` if there is none) and the cached unquoted run."""
        if proj.startswith('\\"', pos):
            end = _match_end(_rules.ESCAPED_BODY_RE, proj, pos + 2)
            found = proj.startswith('\\"', end)
            return ((pos + 2, end) if found else None), run
        first = proj[pos : pos + 1]
        if first in ('"', "'"):
            body = _rules.DQ_BODY_RE if first == '"' else _rules.SQ_BODY_RE
            end = _match_end(body, proj, pos + 1)
            return ((pos + 1, end) if proj[end : end + 1] == first else None), run
        if run[0] <= pos < run[1]:
            return (pos, run[1]), run
        end = _match_end(_rules.BARE_VALUE_RE, proj, pos)
        if end == pos:
            return None, run
        return (pos, end), (pos, end)

    def _kv_kind(self, text: str, proj: str, kw_start: int, match: re.Match[str]) -> str | None:
        """The kind of the key ending at ``match.end("rest")``; ``None`` if it is not sensitive."""
        sep = match.group("sep")
        spaces = sep == ":" or match.group("kq") is not None
        window_start = max(0, kw_start - 64)
        window = proj[window_start:kw_start]
        key_start = window_start + len(window.rstrip(_KEY_CHARS_SPACE if spaces else _KEY_CHARS))
        if spaces:
            words = text[key_start:kw_start].split(" ")
            key_start = kw_start - len(" ".join(words[-4:]))
        key = text[key_start : match.end("rest")].strip()
        kind, norm = self._key_info(key)
        if kind is None:
            if norm == "key" and sep == "=" and proj[key_start - 1 : key_start] in ("?", "&"):
                return "api_key"
            return None
        return None if norm in _HEADER_KEYS else kind

    # ------------------------------------------------------------------ values

    def _value(self, obj: object, kind: str | None, depth: int, seen: set[int]) -> object:
        if isinstance(obj, str):
            return self.redact_text(obj) if kind is None else self._sensitive_str(obj, kind, "")
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, (bytes, bytearray)):
            if kind is not None:
                return self._mask(kind) if obj else obj
            return self._bytes(obj)
        is_container = isinstance(obj, (Mapping, list, tuple, set, frozenset))
        if not is_container:
            return obj if kind is None else self._mask(kind)
        if depth >= _MAX_DEPTH:
            return self._mask("max_depth")
        if id(obj) in seen:
            return "<cycle>"
        seen.add(id(obj))
        try:
            return self._container(obj, kind, depth + 1, seen)
        finally:
            seen.discard(id(obj))

    def _container(self, obj: object, kind: str | None, depth: int, seen: set[int]) -> object:
        if isinstance(obj, Mapping):
            out: dict[Any, object] = {}
            for key, value in obj.items():
                key_kind = self._key_kind(key) if kind is None and isinstance(key, str) else None
                if key_kind is not None and isinstance(value, str):
                    out[key] = self._sensitive_str(value, key_kind, self._key_info(key)[1])
                else:
                    out[key] = self._value(value, kind or key_kind, depth, seen)
            return out
        items = [self._value(item, kind, depth, seen) for item in cast("Iterable[object]", obj)]
        if isinstance(obj, tuple):
            make = getattr(type(obj), "_make", None)
            return make(items) if callable(make) else tuple(items)
        if isinstance(obj, frozenset):
            return frozenset(cast("list[Any]", items))
        if isinstance(obj, set):
            return set(cast("list[Any]", items))
        return items

    def _sensitive_str(self, value: str, kind: str, norm_key: str) -> str:
        if self._skip_value(value):
            return value
        proj = _project(value)
        if norm_key in _AUTHZ_KEYS:
            word = _SCHEME_WORD.match(proj)
            if word and word.group(1) in _KNOWN_SCHEMES:
                return value[: word.end()] + self._mask(self._credential_kind(word.group(1)))
        if norm_key in _COOKIE_KEYS and "=" in value:
            edits = self._cookie_edits(value, proj, 0, len(value))
            if edits:
                return _apply_edits(value, edits)
        redacted = self.redact_text(value)
        if redacted != value and self._mask_re.fullmatch(redacted):
            return redacted
        return self._mask(kind)

    def _bytes(self, data: bytes | bytearray) -> object:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        redacted = self.redact_text(text)
        return data if redacted == text else redacted


_default: Redactor | None = None


def _default_redactor() -> Redactor:
    global _default  # built on first use, not at import time
    redactor = _default
    if redactor is None:
        redactor = _default = Redactor()
    return redactor


def default_redactor() -> Redactor:
    """The shared default :class:`Redactor` (built on first use)."""
    return _default_redactor()


def redact_text(text: str) -> str:
    """Redact ``text`` with the default :class:`Redactor` (built on first use)."""
    return _default_redactor().redact_text(text)


def redact_value(obj: object) -> object:
    """Redact a nested value with the default :class:`Redactor` (:meth:`Redactor.redact_value`)."""
    return _default_redactor().redact_value(obj)
