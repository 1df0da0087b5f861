"""Secret redaction: token formats, key names, text context, values, options, speed bounds."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import sys
import time
from collections import OrderedDict, namedtuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchguard import _secret_rules, redact
from launchguard.redact import REDACTED_KINDS, Redactor, redact_text, redact_value

CORPUS = Path(__file__).parent / "data" / "redact" / "positives.jsonl"
POSITIVES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
TOKEN_KINDS = [rule.kind for rule in _secret_rules.TOKEN_RULES]

HAVE_RE2 = importlib.util.find_spec("re2") is not None

PREFILTERS = ["re", pytest.param("re2", marks=pytest.mark.skipif(not HAVE_RE2, reason="no re2"))]

# Synthetic values in the right shape (never real credentials).
GH = "ghp_" + "A1b2C3d4E5" * 3 + "x9Y8z7"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3OCIsIm5hbWUiOiJ0ZXN0In0."
    "c2lnbmF0dXJlLXN5bnRoZXRpYy0wMTIzNDU2Nzg5YWJj"
)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.fixture(scope="module", params=PREFILTERS)
def engine(request: pytest.FixtureRequest) -> Redactor:
    return Redactor(prefilter=request.param)


def neutral_example(kind: str) -> dict[str, object]:
    return next(p for p in POSITIVES if p["kind"] == kind and p["neutral"])


class TestModuleApi:
    def test_public_names(self) -> None:
        """The module exports exactly its documented API."""
        assert sorted(redact.__all__) == [
            "REDACTED_KINDS",
            "Redactor",
            "default_redactor",
            "redact_text",
            "redact_value",
        ]

    def test_at_least_40_prefixed_kinds(self) -> None:
        """Over 40 token formats, each with its own kind name and a literal keyword."""
        assert len(set(TOKEN_KINDS)) == len(TOKEN_KINDS) >= 40
        for rule in _secret_rules.TOKEN_RULES:
            assert rule.kind in REDACTED_KINDS
            assert rule.keywords or rule.keywords_ci, rule.kind

    def test_default_functions(self) -> None:
        """redact_text and redact_value work without building a Redactor."""
        assert redact_text(f"token {GH}") == "token [REDACTED:github_token]"
        assert redact_value({"password": "hunter2"}) == {"password": "[REDACTED:password]"}


class TestTokenRules:
    @pytest.mark.parametrize("kind", TOKEN_KINDS)
    def test_kind_is_masked_with_its_own_name(self, engine: Redactor, kind: str) -> None:
        """A synthetic token without any key name around it is masked with its kind."""
        example = neutral_example(kind)
        out = engine.redact_text(str(example["text"]))
        assert str(example["secret"]) not in out
        assert f"[REDACTED:{kind}]" in out

    @pytest.mark.parametrize("rule", _secret_rules.TOKEN_RULES, ids=lambda r: r.kind)
    def test_keywords_occur_in_every_match(self, rule: _secret_rules.TokenRule) -> None:
        """Each rule's prefilter keywords appear in every string it matches in the corpus."""
        for example in (p for p in POSITIVES if p["kind"] == rule.kind):
            text = str(example["text"])
            for match in rule.pattern.finditer(text):
                found = match.group(0)
                assert any(k in found for k in rule.keywords) or any(
                    k in text.lower() for k in rule.keywords_ci
                ), (rule.kind, found)

    @pytest.mark.parametrize(
        "text",
        [
            "x" + GH,
            "risk-free task-0123456789abcdef0123456789abcdef",
            "AKIAAKIAAKIAAKIAAKIAAKIA",
            "dapi0123456789abcdef0123456789abcdef01234567",
            "key-0123456789abcdef0123456789abcdef",
            "SK0123456789abcdef0123456789abcdef0",
        ],
    )
    def test_token_shapes_inside_other_words_are_kept(self, redactor: Redactor, text: str) -> None:
        """A prefix inside a longer word, a wrong length or missing context is not a secret."""
        assert redactor.redact_text(text) == text

    def test_mailgun_key_needs_mailgun_in_the_text(self, redactor: Redactor) -> None:
        """key- plus 32 hex is only a Mailgun key when the text mentions Mailgun."""
        key = "key-" + "0a1b2c3d" * 4
        assert (
            redactor.redact_text(f"MAILGUN_KEY {key}") == "MAILGUN_KEY [REDACTED:mailgun_api_key]"
        )

    def test_punctuation_after_a_token_is_kept(self, redactor: Redactor) -> None:
        """Sentence punctuation and closing quotes stay outside the mask."""
        assert redactor.redact_text(f"({GH}), '{GH}'.") == (
            "([REDACTED:github_token]), '[REDACTED:github_token]'."
        )

    def test_jwt_in_a_bearer_header_keeps_its_specific_kind(self, redactor: Redactor) -> None:
        """A JWT used as a bearer token is named jwt."""
        assert redactor.redact_text(f"Authorization: Bearer {JWT}") == (
            "Authorization: Bearer [REDACTED:jwt]"
        )

    def test_several_secrets_in_one_line(self, redactor: Redactor) -> None:
        """Every secret of a line is masked, the text between them kept."""
        aws = "AKIA" + "ABCDEFGHIJ234567"
        out = redactor.redact_text(f"a={aws} b={GH} c=ok")
        assert out == "a=[REDACTED:aws_access_key_id] b=[REDACTED:github_token] c=ok"


class TestPrivateKeys:
    BODY = "MIIEpAIBAAKCAQEAsynthetic0123456789abcdefghijklmnopqrstuvwxyzABCDEF"

    def test_multi_line_block(self, redactor: Redactor) -> None:
        """A PEM block over several lines is masked whole, the text around it kept."""
        text = (
            "loaded key:\n-----BEGIN RSA PRIVATE KEY-----\n"
            f"{self.BODY}\n{self.BODY[::-1]}\n-----END RSA PRIVATE KEY-----\nnext line"
        )
        assert redactor.redact_text(text) == "loaded key:\n[REDACTED:private_key]\nnext line"

    def test_escaped_newlines_in_json(self, redactor: Redactor) -> None:
        """A key serialised into JSON with literal backslash-n is masked up to the quote."""
        pem = f"-----BEGIN PRIVATE KEY-----\\n{self.BODY}\\n-----END PRIVATE KEY-----\\n"
        out = redactor.redact_text(json.dumps({"cfg": pem})[:-1] + ', "n": 1}')
        assert self.BODY not in out
        assert out.endswith('"n": 1}')

    def test_truncated_block_is_still_masked(self, redactor: Redactor) -> None:
        """A block cut off before its END line is masked to the end of the key material."""
        out = redactor.redact_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{self.BODY}")
        assert out == "[REDACTED:private_key]"

    def test_certificates_are_not_secrets(self, redactor: Redactor) -> None:
        """Public certificates are left alone."""
        text = f"-----BEGIN CERTIFICATE-----\n{self.BODY}\n-----END CERTIFICATE-----"
        assert redactor.redact_text(text) == text


class TestKeyNames:
    @pytest.mark.parametrize(
        "name",
        [
            "password",
            "db_password",
            "dbPassword",
            "DB_PASS",
            "passwd",
            "mysql_pwd",
            "passphrase",
            "password2",
            "password_hash",
            "access-token",
            "accessToken",
            "X-Auth-Token",
            "X-Api-Key",
            "api_key",
            "apikey",
            "client_secret",
            "clientSecret",
            "AWS_SECRET_ACCESS_KEY",
            "SecretAccessKey",
            "private_key",
            "AccountKey",
            "signing_key",
            "csrftoken",
            "X-CSRF-Token",
            "_xsrf",
            "Authorization",
            "Proxy-Authorization",
            "set-cookie",
            "Cookie",
            "connect.sid",
            "PHPSESSID",
            "session_id",
            "sessionId",
            "signature",
            "X-Amz-Signature",
            "sig",
            "credentials",
            "auth",
            "jwt",
        ],
    )
    def test_sensitive(self, redactor: Redactor, name: str) -> None:
        """Secret words match by token after normalising case and punctuation."""
        assert redactor.is_sensitive_key(name)

    @pytest.mark.parametrize(
        "name",
        [
            "token_count",
            "max_tokens",
            "total_tokens",
            "token_type",
            "author",
            "authority",
            "auth_method",
            "password_policy",
            "password_min_length",
            "passwordless",
            "session_timeout",
            "sessions",
            "secret_name",
            "secretary",
            "cookie_consent",
            "signature_version",
            "public_key",
            "primary_key",
            "cache_key",
            "key",
            "keyboard",
            "monkey",
            "tokenizer",
            "bypass",
            "passenger",
            "user_id",
            "name",
        ],
    )
    def test_not_sensitive(self, redactor: Redactor, name: str) -> None:
        """Counts, settings and lookalike words are not secrets."""
        assert not redactor.is_sensitive_key(name)

    def test_extra_sensitive_keys(self) -> None:
        """Configured names match by token sequence in any spelling."""
        r = Redactor(sensitive_keys=["ssn", "social_security_number"])
        for name in ("SSN", "user_ssn", "socialSecurityNumber", "socialsecuritynumber"):
            assert r.is_sensitive_key(name), name
        assert not r.is_sensitive_key("lessnumber")
        assert r.redact_text("ssn=123-45-6789 ok=1") == "ssn=[REDACTED:sensitive_key] ok=1"


class TestKeyValueText:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("password=hunter2 user=bob", "password=[REDACTED:password] user=bob"),
            ('{"db_password": "hun ter2"}', '{"db_password": "[REDACTED:password]"}'),
            ("{'dbPassword': 'x'}", "{'dbPassword': '[REDACTED:password]'}"),
            ('{\\"token\\": \\"abc\\"}', '{\\"token\\": \\"[REDACTED:token]\\"}'),
            ("password: hunter2", "password: [REDACTED:password]"),
            ("PASSWORD = hunter2", "PASSWORD = [REDACTED:password]"),
            ("'secret' => 's3'", "'secret' => '[REDACTED:secret]'"),
            ("X-Api-Key: k-123", "X-Api-Key: [REDACTED:api_key]"),
            (
                "AWS Secret Access Key: abc/def",
                "AWS Secret Access Key: [REDACTED:aws_secret_access_key]",
            ),
            ("password=a,b,c next", "password=[REDACTED:password] next"),
            ("{password=abc, user=bob}", "{password=[REDACTED:password], user=bob}"),
            (
                "Server=db;Password=p4ss;Database=app",
                "Server=db;Password=[REDACTED:password];Database=app",
            ),
            ("(passwd: abc)", "(passwd: [REDACTED:password])"),
            ("csrf_token=abc", "csrf_token=[REDACTED:csrf_token]"),
        ],
    )
    def test_masked(self, redactor: Redactor, text: str, expected: str) -> None:
        """Quoted, unquoted, JSON, escaped-JSON and header forms mask the whole value."""
        assert redactor.redact_text(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            '{"password": null, "token": true, "secret": ""}',
            "DB_PASSWORD=${DB_PASSWORD}",
            "UPDATE users SET password_hash = %s WHERE id = %s",
            "password=*****",
            "token_count=5 max_tokens=256 author: jane",
            "password_policy=strict session_timeout=30",
            "cache key=user:42",
            "Error: token expired",
        ],
    )
    def test_kept(self, redactor: Redactor, text: str) -> None:
        """Placeholders, describing keys and prose stay as they are."""
        assert redactor.redact_text(text) == text

    def test_keys_inside_a_kept_value_are_examined(self, redactor: Redactor) -> None:
        """A secret parameter inside the value of a harmless key is still masked."""
        out = redactor.redact_text("token_url=https://idp/token?client_secret=abc&x=1")
        assert out == "token_url=https://idp/token?client_secret=[REDACTED:secret]&x=1"


class TestUrls:
    @pytest.mark.parametrize(
        "url",
        [
            "postgres://app:{pw}@db:5432/app",
            "postgresql+psycopg://app:{pw}@db/app",
            "mysql://root:{pw}@localhost/shop",
            "redis://:{pw}@cache:6379/0",
            "mongodb+srv://admin:{pw}@cluster0.example.net/test",
            "amqp://guest:{pw}@rabbit:5672/",
        ],
    )
    def test_database_urls(self, redactor: Redactor, url: str) -> None:
        """Database connection strings keep the user and mask the password."""
        out = redactor.redact_text(url.format(pw="S3cr3t!x"))
        assert out == url.format(pw="[REDACTED:database_password]")

    def test_other_urls_keep_user(self, redactor: Redactor) -> None:
        """scheme://user:pass@host keeps the user and masks the password."""
        out = redactor.redact_text("clone https://deploy:p4ss@git.example.com/r.git")
        assert out == "clone https://deploy:[REDACTED:url_password]@git.example.com/r.git"

    def test_password_with_at_sign_is_masked_whole(self, redactor: Redactor) -> None:
        """An unencoded @ in the password does not leave part of it visible."""
        out = redactor.redact_text("https://u:p@ss@w0rd@host/x")
        assert out == "https://u:[REDACTED:url_password]@host/x"

    @pytest.mark.parametrize(
        "text", ["https://user@host/x", "ssh://git@github.com:22/r.git", "http://[::1]:80/a@b"]
    )
    def test_urls_without_password(self, redactor: Redactor, text: str) -> None:
        """URLs without a password are unchanged."""
        assert redactor.redact_text(text) == text

    @pytest.mark.parametrize(
        "param",
        [
            "token",
            "access_token",
            "api_key",
            "apikey",
            "signature",
            "X-Amz-Signature",
            "sig",
            "password",
            "key",
        ],
    )
    def test_sensitive_query_parameters(self, redactor: Redactor, param: str) -> None:
        """Sensitive query parameters are masked; ordinary ones are kept."""
        out = redactor.redact_text(f"GET /x?page=2&{param}=abc123&sort=asc")
        assert out.startswith(f"GET /x?page=2&{param}=[REDACTED:")
        assert out.endswith("]&sort=asc")

    def test_oauth_code(self, redactor: Redactor) -> None:
        """code= is masked when it is long enough to be an OAuth code, not a status code."""
        assert redactor.redact_text("/cb?code=4%2F0AX4XfWh1234567890ab&state=x") == (
            "/cb?code=[REDACTED:oauth_code]&state=x"
        )
        assert redactor.redact_text("/promo?code=SUMMER24") == "/promo?code=SUMMER24"


class TestHeaders:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Authorization: Bearer abc.def-123", "Authorization: Bearer [REDACTED:bearer_token]"),
            ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic [REDACTED:basic_auth]"),
            (
                "Proxy-Authorization: Basic dXNlcjpwYXNz",
                "Proxy-Authorization: Basic [REDACTED:basic_auth]",
            ),
            (
                '{"Authorization": "Token abc 123"}',
                '{"Authorization": "Token [REDACTED:authorization]"}',
            ),
            (
                "Authorization: raw-key-123 method=GET",
                "Authorization: [REDACTED:authorization] method=GET",
            ),
            (
                'Authorization: Digest username="bob", response="6629fae4"',
                "Authorization: Digest [REDACTED:authorization]",
            ),
        ],
    )
    def test_authorization(self, redactor: Redactor, text: str, expected: str) -> None:
        """The scheme word is kept and the credential masked, for Basic, Bearer and others."""
        assert redactor.redact_text(text) == expected

    def test_cookie_keeps_names(self, redactor: Redactor) -> None:
        """Every cookie value is masked; names stay readable."""
        out = redactor.redact_text("Cookie: sessionid=abc; theme=dark user=bob")
        assert out == "Cookie: sessionid=[REDACTED:cookie]; theme=[REDACTED:cookie] user=bob"

    def test_set_cookie_keeps_attributes(self, redactor: Redactor) -> None:
        """Set-Cookie attributes (Path, Expires, HttpOnly, ...) are not values to hide."""
        text = "Set-Cookie: sid=xyz; Path=/; HttpOnly; Expires=Wed, 21 Oct 2026 07:28:00 GMT"
        assert redactor.redact_text(text) == text.replace("sid=xyz", "sid=[REDACTED:cookie]")

    def test_standalone_credentials(self, redactor: Redactor) -> None:
        """Bearer and Basic credentials outside a header are masked too."""
        out = redactor.redact_text("retry with Bearer 0a1b2c3d4e5f and Basic dXNlcjpwYXNz")
        assert out == "retry with Bearer [REDACTED:bearer_token] and Basic [REDACTED:basic_auth]"

    def test_basic_must_decode_to_user_and_password(self, redactor: Redactor) -> None:
        """Basic followed by base64 that is not user:password is not a credential."""
        other = base64.b64encode(b"just some text").decode()
        assert redactor.redact_text(f"Basic {other}") == f"Basic {other}"

    @pytest.mark.parametrize(
        "text",
        [
            "bearer of bad news and bearer instruments",
            "Basic plan selected; basic passenger info",
            '{"token_type": "Bearer", "expires_in": 3600}',
            "WWW-Authenticate: Bearer realm=api",
        ],
    )
    def test_prose_is_kept(self, redactor: Redactor, text: str) -> None:
        """The words bearer and basic in prose are not credentials."""
        assert redactor.redact_text(text) == text


Pair = namedtuple("Pair", "name value")


class TestRedactValue:
    def test_by_key_and_by_value(self, redactor: Redactor) -> None:
        """Sensitive keys are masked whole; other strings are redacted as text."""
        event = {"event": f"login with {GH}", "password": "hunter2", "user": "bob", "n": 3}
        assert redactor.redact_value(event) == {
            "event": "login with [REDACTED:github_token]",
            "password": "[REDACTED:password]",
            "user": "bob",
            "n": 3,
        }

    def test_caller_objects_are_not_modified(self, redactor: Redactor) -> None:
        """New containers are returned; the input is left exactly as it was."""
        event = {"a": [{"token": "t"}, ("x", {"secret": "s"})], "b": {1, 2}}
        before = copy.deepcopy(event)
        out = redactor.redact_value(event)
        assert event == before
        assert isinstance(out, dict)
        assert out is not event
        assert out["a"] is not event["a"]
        assert out["b"] is not event["b"]

    def test_container_types_are_kept(self, redactor: Redactor) -> None:
        """Lists, tuples, named tuples, sets and frozensets keep their type."""
        secret = f"x {GH}"
        masked = "x [REDACTED:github_token]"
        out = redactor.redact_value(
            [(secret,), Pair("a", secret), {secret}, frozenset({secret}), OrderedDict(k=secret)]
        )
        assert out == [(masked,), Pair("a", masked), {masked}, frozenset({masked}), {"k": masked}]
        assert isinstance(out, list)
        assert type(out[1]) is Pair
        assert type(out[3]) is frozenset

    def test_scalars(self, redactor: Redactor) -> None:
        """Non-string scalars are kept, except under a sensitive key (None and booleans kept)."""
        value = {"n": 1, "f": 1.5, "none": None, "pin": 1234, "password": 1234}
        value |= {"token": None, "secret": True}
        out = redactor.redact_value(value)
        assert out == {
            "n": 1,
            "f": 1.5,
            "none": None,
            "pin": 1234,
            "password": "[REDACTED:password]",
            "token": None,
            "secret": True,
        }

    def test_nested_value_under_sensitive_key(self, redactor: Redactor) -> None:
        """A container under a sensitive key keeps its shape with every leaf masked."""
        out = redactor.redact_value({"credentials": {"user": "u", "keys": ["a", "b"], "ok": None}})
        mask = "[REDACTED:credential]"
        assert out == {"credentials": {"user": mask, "keys": [mask, mask], "ok": None}}

    def test_header_dicts(self, redactor: Redactor) -> None:
        """Authorization keeps its scheme and Cookie keeps cookie names in header dicts."""
        headers = {"Authorization": "Bearer abc", "Cookie": "a=1; b=2", "X-Request-Id": "r1"}
        assert redactor.redact_value(headers) == {
            "Authorization": "Bearer [REDACTED:bearer_token]",
            "Cookie": "a=[REDACTED:cookie]; b=[REDACTED:cookie]",
            "X-Request-Id": "r1",
        }

    def test_specific_kind_under_sensitive_key(self, redactor: Redactor) -> None:
        """A recognised token under a sensitive key keeps its specific kind."""
        assert redactor.redact_value({"token": GH}) == {"token": "[REDACTED:github_token]"}

    def test_bytes(self, redactor: Redactor) -> None:
        """Clean bytes come back as the same object; bytes with a secret become a redacted str."""
        clean = b"GET / 200"
        assert redactor.redact_value(clean) is clean
        assert redactor.redact_value(f"t={GH}".encode()) == "t=[REDACTED:github_token]"
        assert redactor.redact_value(b"\xff password=x") == "\xff password=[REDACTED:password]"

    def test_cycles_and_depth(self, redactor: Redactor) -> None:
        """Reference cycles and very deep nesting end in a placeholder instead of an error."""
        loop: list[object] = ["a"]
        loop.append(loop)
        assert redactor.redact_value(loop) == ["a", "<cycle>"]
        deep: list[object] = []
        node = deep
        for _ in range(100):
            child: list[object] = []
            node.append(child)
            node = child
        assert "[REDACTED:max_depth]" in repr(redactor.redact_value(deep))

    def test_other_objects_are_kept(self, redactor: Redactor) -> None:
        """Objects redact_value does not know are returned as they are."""
        marker = object()
        assert redactor.redact_value(marker) is marker


class TestRedactorOptions:
    def test_extra_patterns(self) -> None:
        """User rules run on every text; the named group secret limits the mask."""
        r = Redactor(
            extra_patterns=[("internal", r"itk_[a-z0-9]{8}"), ("pin", r"PIN (?P<secret>\d{4})")]
        )
        assert r.redact_text("itk_abcd1234 PIN 1234") == "[REDACTED:internal] PIN [REDACTED:pin]"

    def test_allowlist(self) -> None:
        """Allow-listed values (whole-value match) are never masked."""
        example = "AKIAIOSFODNN7EXAMPLE"
        r = Redactor(allowlist=[example, "hunter[0-9]"])
        assert r.redact_text(f"{example} password=hunter2") == f"{example} password=hunter2"
        assert r.redact_text("password=hunter22") == "password=[REDACTED:password]"

    def test_mask_template(self) -> None:
        """The mask template can be changed, with or without the kind."""
        assert Redactor(mask="<{kind}>").redact_text("password=x") == "password=<password>"
        assert Redactor(mask="***").redact_text(f"a {GH} password=x") == "a *** password=***"

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"extra_patterns": [("k", "(unclosed")]}, r"extra_patterns\[0\] '\(unclosed'"),
            ({"extra_patterns": [("bad kind!", "x")]}, r"extra_patterns\[0\] kind 'bad kind!'"),
            ({"extra_patterns": [("k", "a*")]}, r"extra_patterns\[0\] 'a\*' matches the empty"),
            ({"extra_patterns": ["abc"]}, r"extra_patterns\[0\] must be a \(kind, regex\) pair"),
            ({"allowlist": ["ok", "[z-a]"]}, r"allowlist\[1\] '\[z-a\]' is not a valid regex"),
            ({"sensitive_keys": "ssn"}, r"sensitive_keys must be a sequence"),
            ({"sensitive_keys": ["--"]}, r"sensitive_keys\[0\]"),
            ({"mask": ""}, r"mask must be a non-empty string"),
            ({"mask": "{name}"}, r"mask '\{name\}' is not a valid template"),
            ({"mask": "{kind"}, r"mask '\{kind' is not a valid template"),
            ({"prefilter": "fast"}, r"prefilter must be 'auto', 're' or 're2', got 'fast'"),
        ],
    )
    def test_invalid_options_fail_early(self, options: dict[str, object], message: str) -> None:
        """Bad options raise ValueError in __init__, naming the option and the value."""
        with pytest.raises(ValueError, match=message):
            Redactor(**options)  # type: ignore[arg-type]

    def test_re2_prefilter_needs_google_re2(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """prefilter='re2' without google-re2 says what to install; 'auto' falls back."""
        monkeypatch.setitem(sys.modules, "re2", None)
        with pytest.raises(ImportError, match=r"launchguard\[fast\]"):
            Redactor(prefilter="re2")
        assert Redactor().prefilter == "re"

    def test_text_must_be_str(self, redactor: Redactor) -> None:
        """redact_text rejects non-str input instead of guessing."""
        with pytest.raises(TypeError, match="needs a str, got bytes"):
            redactor.redact_text(b"x")  # type: ignore[arg-type]


FRAGMENTS = [
    "password",
    "token",
    "=",
    ": ",
    '"',
    "'",
    " ",
    "&",
    "?",
    ";",
    "\n",
    "@",
    "://",
    "u:p",
    "Bearer ",
    "Basic ",
    "Cookie: ",
    "Authorization: ",
    "ghp_",
    "A1b2C3d4E5f6",
    "AKIA",
    "ABCDEFGH23456789",
    "eyJ",
    "abcDEF123",
    ".",
    "-",
    "_",
    "sk-",
    "-----BEGIN PRIVATE KEY-----",
    "dXNlcjpwYXNz",
    "code=",
    "0123456789abcdef",
    "Q~",
    "é",
    "\udc80",
]


class TestPrefilter:
    def test_clean_text_is_returned_as_is(self, engine: Redactor) -> None:
        """A line without keywords costs one scan and comes back as the same object."""
        line = "2026-05-01T12:00:00Z INFO GET /api/v1/orders/42 200 12.3ms 203.0.113.9"
        assert engine.redact_text(line) is line

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
    def test_prefilter_never_changes_the_result(self, text: str) -> None:
        """Running only the rules whose keyword occurs gives the same output as running all."""
        pure = _PURE
        expected = pure._redact_unfiltered(text)
        assert pure.redact_text(text) == expected
        if _RE2 is not None:
            assert _RE2.redact_text(text) == expected
            assert set(_RE2._prefilter.hits(text) or ()) == set(pure._prefilter.hits(text) or ())


_PURE = Redactor(prefilter="re")
_RE2 = Redactor(prefilter="re2") if HAVE_RE2 else None

MB = 1 << 20
ADVERSARIAL = {
    "a=": "a=" * (MB // 2),
    "a": "a" * MB,
    "eyJ": "eyJ" * (MB // 3),
    "eyJ-": "eyJ-" * (MB // 4),
    "eyJ.": "eyJaaaaa." * (MB // 9),
    "://": "://" * (MB // 3),
    "://u:p": "://u:p" * (MB // 6) + "@",
    "AKIA": "AKIA" * (MB // 4),
    "ghp_": "ghp_" * (MB // 4),
    "sk-": "sk-" * (MB // 3),
    "token=": "token=" * (MB // 6),
    "password:": "password:" * (MB // 9),
    '"password": "': '"password": "' * (MB // 13),
    "passwordpassword": "password" * (MB // 8),
    "sessions=": "sessions=" * (MB // 9),
    "&key=": "&key=" * (MB // 5),
    "PEM headers": "-----BEGIN RSA PRIVATE KEY-----\n" * (MB // 32),
    "dashes": "-" * MB,
    "Authorization:": "Authorization: " * (MB // 15),
    "Cookie:": "Cookie: a=b; " * (MB // 13),
    "Bearer": "Bearer " * (MB // 7),
    "Basic": "Basic QUJD" * (MB // 10),
    "Q~": "abc1Q~" * (MB // 6),
    ":AA": "123456:AA" * (MB // 9),
    ".atlasv1.": ".atlasv1." * (MB // 9),
    "quotes": '"' * MB,
    "backslashes": "\\" * MB,
    "escaped json": '\\"password\\":\\"' * (MB // 16),
}


class TestLinearTime:
    @pytest.mark.parametrize("name", list(ADVERSARIAL))
    @pytest.mark.parametrize("mode", ["re", "re2", "all rules"])
    def test_one_megabyte_adversarial_input(self, name: str, mode: str) -> None:
        """Every rule stays linear on 1 MB of prefix-like or separator-heavy input."""
        text = ADVERSARIAL[name]
        if mode == "re2":
            if _RE2 is None:
                pytest.skip("google-re2 is not installed")
            run = _RE2.redact_text
        else:
            run = _PURE.redact_text if mode == "re" else _PURE._redact_unfiltered
        start = time.perf_counter()
        run(text)
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0, f"{name} ({mode}): {elapsed:.2f} s"
