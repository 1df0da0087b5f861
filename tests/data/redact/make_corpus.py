"""Generate the secret-redaction corpus used by ``tests/test_redact_corpus.py``.

Every secret here is SYNTHETIC: random characters in the right shape, drawn from a seeded
generator. None of them was ever a real credential.

Run from the repository root (the output is deterministic)::

    python tests/data/redact/make_corpus.py

Writes ``positives.jsonl`` (``{"kind", "secret", "text", "neutral"}``: ``secret`` must not
survive redaction; ``neutral`` lines have no key name around the secret, so the mask must name
``kind``) and ``benign.jsonl`` (``{"category", "text"}``: lines that must come out unchanged).
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240501
BENIGN_LINES = 10_500

UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
ALNUM = UPPER + LOWER + DIGITS
HEX = "0123456789abcdef"
B64URL = ALNUM + "-_"
B64 = ALNUM + "+/"
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"

rng = random.Random(SEED)


def pick(alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url_json(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt() -> str:
    header = b64url_json({"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"})
    payload = b64url_json(
        {
            "sub": pick(DIGITS, 8),
            "name": pick(LOWER, 6),
            "iat": rng.randint(1_600_000_000, 1_800_000_000),
        }
    )
    return f"{header}.{payload}.{pick(B64URL, 43)}"


def pem() -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", ""])
    lines = [pick(B64, 64) for _ in range(rng.randint(3, 6))] + [pick(B64, 20) + "=="]
    return (
        f"-----BEGIN {kind}PRIVATE KEY-----\n"
        + "\n".join(lines)
        + f"\n-----END {kind}PRIVATE KEY-----"
    )


def slack(prefix: str) -> str:
    return f"{prefix}-{pick(DIGITS, 12)}-{pick(DIGITS, 13)}-{pick(ALNUM, 24)}"


TOKENS: dict[str, Callable[[], str]] = {
    "aws_access_key_id": lambda: (
        rng.choice(["AKIA", "ASIA", "ABIA", "ACCA"]) + pick(UPPER + "234567", 16)
    ),
    "google_api_key": lambda: "AIza" + pick(B64URL, 35),
    "google_oauth_client_secret": lambda: "GOCSPX-" + pick(B64URL, 28),
    "google_oauth_access_token": lambda: "ya29." + pick(B64URL, 90),
    "azure_ad_client_secret": lambda: (
        pick(ALNUM, 3) + pick(DIGITS, 1) + "Q~" + pick(ALNUM + "_~.-", 33) + pick(ALNUM, 1)
    ),
    "alibaba_access_key_id": lambda: "LTAI" + pick(ALNUM, 20),
    "digitalocean_pat": lambda: "dop_v1_" + pick(HEX, 64),
    "digitalocean_oauth_token": lambda: "doo_v1_" + pick(HEX, 64),
    "digitalocean_refresh_token": lambda: "dor_v1_" + pick(HEX, 64),
    "databricks_token": lambda: "dapi" + pick(HEX, 32) + rng.choice(["", "-2", "-3"]),
    "heroku_api_key": lambda: "HRKU-AA" + pick(B64URL, 58),
    "terraform_cloud_token": lambda: pick(ALNUM, 14) + ".atlasv1." + pick(ALNUM + "_=-", 67),
    "pulumi_access_token": lambda: "pul-" + pick(HEX, 40),
    "supabase_token": lambda: "sbp_" + pick(HEX, 40),
    "planetscale_token": lambda: "pscale_tkn_" + pick(ALNUM, 43),
    "planetscale_password": lambda: "pscale_pw_" + pick(ALNUM, 43),
    "github_token": lambda: "ghp_" + pick(ALNUM, 36),
    "github_oauth_token": lambda: "gho_" + pick(ALNUM, 36),
    "github_user_to_server_token": lambda: "ghu_" + pick(ALNUM, 36),
    "github_server_to_server_token": lambda: "ghs_" + pick(ALNUM, 36),
    "github_refresh_token": lambda: "ghr_" + pick(ALNUM, 76),
    "github_fine_grained_token": lambda: "github_pat_" + pick(ALNUM, 22) + "_" + pick(ALNUM, 59),
    "gitlab_token": lambda: "glpat-" + pick(B64URL, 20),
    "gitlab_runner_token": lambda: "glrt-" + pick(B64URL, 20),
    "gitlab_deploy_token": lambda: "gldt-" + pick(B64URL, 20),
    "gitlab_pipeline_trigger_token": lambda: "glptt-" + pick(HEX, 40),
    "bitbucket_app_password": lambda: "ATBB" + pick(ALNUM, 32),
    "atlassian_api_token": lambda: "ATATT3xFfGF0" + pick(B64URL, 170) + "=" + pick(HEX.upper(), 8),
    "npm_token": lambda: "npm_" + pick(ALNUM, 36),
    "pypi_token": lambda: "pypi-AgEIcHlwaS5vcmc" + pick(B64URL, 70),
    "docker_hub_token": lambda: "dckr_pat_" + pick(B64URL, 27),
    "vault_service_token": lambda: "hvs." + pick(B64URL, rng.randint(24, 95)),
    "vault_batch_token": lambda: "hvb." + pick(B64URL, rng.randint(100, 140)),
    "doppler_token": lambda: "dp." + rng.choice(["pt", "st", "ct", "sa"]) + "." + pick(ALNUM, 43),
    "tailscale_key": lambda: (
        "tskey-" + rng.choice(["api", "auth"]) + "-k" + pick(ALNUM, 11) + "CNTRL-" + pick(ALNUM, 33)
    ),
    "slack_bot_token": lambda: slack("xoxb"),
    "slack_user_token": lambda: (
        f"xoxp-{pick(DIGITS, 12)}-{pick(DIGITS, 12)}-{pick(DIGITS, 13)}-{pick(HEX, 32)}"
    ),
    "slack_workspace_token": lambda: (
        f"xoxa-2-{pick(DIGITS, 12)}-{pick(DIGITS, 13)}-{pick(HEX, 64)}"
    ),
    "slack_refresh_token": lambda: f"xoxr-{pick(DIGITS, 12)}-{pick(ALNUM, 40)}",
    "slack_config_token": lambda: rng.choice(["xoxe.xoxp-1-", "xoxe-1-"]) + pick(ALNUM, 140),
    "slack_legacy_token": lambda: slack("xoxs"),
    "slack_app_token": lambda: (
        f"xapp-1-A{pick(UPPER + DIGITS, 10)}-{pick(DIGITS, 13)}-{pick(HEX, 64)}"
    ),
    "slack_webhook_url": lambda: (
        f"T{pick(UPPER + DIGITS, 8)}/B{pick(UPPER + DIGITS, 10)}/{pick(ALNUM, 24)}"
    ),
    "discord_webhook_url": lambda: pick(B64URL, 68),
    "telegram_bot_token": lambda: "AA" + pick(B64URL, 33),
    "twilio_api_key": lambda: "SK" + pick(HEX, 32),
    "sendgrid_api_key": lambda: "SG." + pick(B64URL, 22) + "." + pick(B64URL, 43),
    "mailgun_api_key": lambda: "key-" + pick(HEX, 32),
    "postman_api_key": lambda: "PMAK-" + pick(HEX, 24) + "-" + pick(HEX, 34),
    "linear_api_key": lambda: "lin_api_" + pick(ALNUM, 40),
    "notion_token": lambda: "ntn_" + pick(DIGITS, 11) + pick(ALNUM, 35),
    "figma_token": lambda: "figd_" + pick(B64URL, 40),
    "contentful_token": lambda: "CFPAT-" + pick(B64URL, 43),
    "stripe_secret_key": lambda: rng.choice(["sk_live_", "sk_test_"]) + pick(ALNUM, 24),
    "stripe_restricted_key": lambda: rng.choice(["rk_live_", "rk_test_"]) + pick(ALNUM, 24),
    "stripe_webhook_secret": lambda: "whsec_" + pick(ALNUM, 32),
    "square_access_token": lambda: "EAAA" + pick(B64URL, 60),
    "square_legacy_access_token": lambda: "sq0atp-" + pick(B64URL, 22),
    "square_oauth_secret": lambda: "sq0csp-" + pick(B64URL, 43),
    "shopify_access_token": lambda: "shpat_" + pick(HEX, 32),
    "shopify_custom_app_token": lambda: "shpca_" + pick(HEX, 32),
    "shopify_private_app_token": lambda: "shppa_" + pick(HEX, 32),
    "shopify_shared_secret": lambda: "shpss_" + pick(HEX, 32),
    "anthropic_api_key": lambda: "sk-ant-api03-" + pick(B64URL, 93) + "AA",
    "anthropic_admin_key": lambda: "sk-ant-admin01-" + pick(B64URL, 93) + "AA",
    "openai_api_key": lambda: rng.choice(
        [
            "sk-proj-" + pick(B64URL, 74) + "T3BlbkFJ" + pick(B64URL, 74),
            "sk-svcacct-" + pick(B64URL, 74) + "T3BlbkFJ" + pick(B64URL, 74),
            "sk-" + pick(ALNUM, 20) + "T3BlbkFJ" + pick(ALNUM, 20),
        ]
    ),
    "sk_api_key": lambda: "sk-" + pick(HEX, 32),
    "huggingface_token": lambda: "hf_" + pick(UPPER + LOWER, 34),
    "groq_api_key": lambda: "gsk_" + pick(ALNUM, 52),
    "replicate_api_token": lambda: "r8_" + pick(ALNUM, 37),
    "perplexity_api_key": lambda: "pplx-" + pick(ALNUM, 48),
    "xai_api_key": lambda: "xai-" + pick(ALNUM, 80),
    "sentry_user_token": lambda: "sntryu_" + pick(HEX, 64),
    "sentry_org_token": lambda: (
        "sntrys_"
        + b64url_json({"iat": 1_700_000_000, "url": "https://sentry.io", "org": pick(LOWER, 6)})
        + "_"
        + pick(B64URL, 43)
    ),
    "grafana_service_account_token": lambda: "glsa_" + pick(ALNUM, 32) + "_" + pick(HEX, 8),
    "grafana_cloud_token": lambda: "glc_" + pick(B64, 120) + "==",
    "new_relic_user_api_key": lambda: "NRAK-" + pick(UPPER + DIGITS, 27),
    "dynatrace_token": lambda: (
        "dt0c01." + pick(UPPER + DIGITS, 24) + "." + pick(UPPER + DIGITS, 64)
    ),
    "onepassword_service_account_token": lambda: "ops_eyJ" + pick(B64URL, 200),
    "age_secret_key": lambda: "AGE-SECRET-KEY-1" + pick(BECH32, 58),
    "private_key": pem,
    "mapbox_secret_token": lambda: "sk.eyJ1Ijoi" + pick(B64URL, 40) + "." + pick(B64URL, 22),
    "jwt": jwt,
}

# How a token appears around its secret when the secret is not the whole token.
WRAP: dict[str, Callable[[str], str]] = {
    "slack_webhook_url": lambda s: f"https://hooks.slack.com/services/{s}",
    "discord_webhook_url": lambda s: f"https://discord.com/api/webhooks/{pick(DIGITS, 18)}/{s}",
    "telegram_bot_token": lambda s: f"https://api.telegram.org/bot{pick(DIGITS, 10)}:{s}/getMe",
}

NEUTRAL_TEMPLATES = [
    "2024-05-01T12:{m:02d}:07Z WARN  config loaded from env: {s} (rotated 3 days ago)",
    "found credential {s} in build output of job #{n}",
    'ERROR worker-{n} upstream rejected "{s}" with 401',
    "{s}",
]
KEYED_TEMPLATES = [
    '{{"level": "error", "event": "call failed", "credentials": "{s}", "attempt": {n}}}',
    "export API_TOKEN={s}",
    'Traceback (most recent call last):\n  File "/srv/app/client.py", line {n}, in call\n'
    "    resp = session.get(url, headers={{'X-Token': '{s}'}})\nrequests.exceptions.HTTPError: 403",
]


def token_positives() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for kind, make in TOKENS.items():
        for i, template in enumerate(NEUTRAL_TEMPLATES + KEYED_TEMPLATES):
            secret = make()
            shown = WRAP.get(kind, lambda s: s)(secret)
            if kind == "private_key" and i >= len(NEUTRAL_TEMPLATES):
                shown = shown.replace("\n", "\\n")
            text = template.format(s=shown, n=rng.randint(1, 999), m=rng.randint(0, 59))
            if kind == "mailgun_api_key":
                text = "mailgun: " + text
            probe = secret.splitlines()[2] if kind == "private_key" else secret
            out.append(
                {"kind": kind, "secret": probe, "text": text, "neutral": i < len(NEUTRAL_TEMPLATES)}
            )
    return out


def password() -> str:
    return pick(ALNUM, rng.randint(8, 14)) + pick("!$*+-_.~", 2) + pick(ALNUM, 3)


def basic() -> str:
    raw = f"{pick(LOWER, 6)}:{password()}".encode()
    return base64.b64encode(raw).decode()


CONTEXT: dict[str, list[Callable[[str], str]]] = {
    "password": [
        lambda s: (
            f"2024-05-01 12:00:01 INFO db connect host=db.internal user=app password={s} sslmode=require"
        ),
        lambda s: f'{{"event": "login", "user": "bob", "db_password": "{s}"}}',
        lambda s: f"DB_PASS={s}",
        lambda s: f"settings: {{'dbPassword': '{s}', 'timeout': 30}}",
        lambda s: f"smtp login failed (user=mailer, passwd: {s})",
    ],
    "url_password": [
        lambda s: f"cloning https://deploy:{s}@git.example.com/team/repo.git",
        lambda s: f"fetch failed: ftp://backup:{s}@files.example.org/nightly.tar.gz",
        lambda s: f'proxy="http://proxyuser:{s}@10.0.0.5:3128"',
    ],
    "database_password": [
        lambda s: f"DATABASE_URL=postgresql+psycopg://app:{s}@db.internal:5432/app",
        lambda s: (
            f"connecting to mongodb+srv://admin:{s}@cluster0.ab1cd.mongodb.net/test?retryWrites=true"
        ),
        lambda s: f"redis://:{s}@cache.internal:6379/0",
        lambda s: f"OperationalError: could not connect to mysql://root:{s}@localhost:3306/shop",
        lambda s: f"broker_url = amqp://guest:{s}@rabbit:5672//",
    ],
    "aws_secret_access_key": [
        lambda s: f"aws_secret_access_key = {s}",
        lambda s: f'{{"AccessKeyId": "AKIA{pick(UPPER, 16)}", "SecretAccessKey": "{s}"}}',
        lambda s: f"AWS_SECRET_ACCESS_KEY={s} aws s3 ls",
    ],
    "bearer_token": [
        lambda s: f"GET /api/v1/me HTTP/1.1 Authorization: Bearer {s}",
        lambda s: (
            f'request headers {{"Authorization": "Bearer {s}", "Accept": "application/json"}}'
        ),
        lambda s: f"curl -H 'Authorization: Bearer {s}' https://api.example.com/v2/items",
        lambda s: f"retrying with token Bearer {s}",
    ],
    "basic_auth": [
        lambda s: f"Authorization: Basic {s}",
        lambda s: f"Proxy-Authorization: Basic {s}",
        lambda s: f"sent header authorization=Basic {s} to upstream",
    ],
    "authorization": [
        lambda s: (
            f'Authorization: Digest username="bob", realm="api", nonce="{pick(HEX, 16)}", response="{s}"'
        ),
        lambda s: f"authorization: {s}",
        lambda s: f'{{"proxy-authorization": "Token {s}"}}',
    ],
    "cookie": [
        lambda s: f"Cookie: sessionid={s}; theme=dark",
        lambda s: f"Set-Cookie: session={s}; Path=/; HttpOnly; Secure; SameSite=Lax",
        lambda s: f'"cookie": "csrftoken={pick(ALNUM, 32)}; sessionid={s}"',
    ],
    "signature": [
        lambda s: (
            f"GET https://bucket.s3.amazonaws.com/a.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={s}"
        ),
        lambda s: (
            f"https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&se=2024-05-02&sp=r&sig={s}"
        ),
        lambda s: f'{{"webhook": "order.paid", "signature": "{s}"}}',
    ],
    "oauth_code": [
        lambda s: f"GET /oauth/callback?code={s}&state={pick(ALNUM, 12)} 302",
        lambda s: f"redirect to https://app.example.com/login/callback?state=xyz&code={s}",
        lambda s: (
            f'127.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET /auth/complete?code={s} HTTP/1.1" 200'
        ),
    ],
    "api_key": [
        lambda s: f"X-Api-Key: {s}",
        lambda s: f"GET /v1/forecast?city=Paris&api_key={s}",
        lambda s: f'{{"apiKey": "{s}", "region": "eu-west-1"}}',
        lambda s: f"GET /maps/geocode?address=Main+St&key={s}",
    ],
    "token": [
        lambda s: f"GET /feed?access_token={s}&limit=20",
        lambda s: f'{{"refresh_token": "{s}", "expires_in": 3600}}',
        lambda s: f"X-Auth-Token: {s}",
    ],
    "secret": [
        lambda s: (
            f"POST /oauth/token grant_type=client_credentials&client_id=web&client_secret={s}"
        ),
        lambda s: f'{{"webhookSecret": "{s}"}}',
        lambda s: f"JWT_SECRET={s}",
    ],
    "session": [
        lambda s: f"user logged in session_id={s} ip=203.0.113.9",
        lambda s: f"PHPSESSID={s}",
        lambda s: f'{{"sessionId": "{s}", "path": "/cart"}}',
    ],
    "csrf_token": [
        lambda s: f"csrf_token={s}",
        lambda s: f'"X-CSRF-Token": "{s}"',
        lambda s: f"form data: _csrf={s}&qty=2",
    ],
    "credential": [
        lambda s: f"credentials={s}",
        lambda s: f'{{"creds": "{s}"}}',
        lambda s: f"SERVICE_CREDENTIALS: {s}",
    ],
}


def context_secret(kind: str) -> str:
    if kind == "aws_secret_access_key":
        return pick(ALNUM + "/+", 40)
    if kind == "basic_auth":
        return basic()
    if kind == "authorization":
        return pick(HEX, 32)
    if kind in ("oauth_code", "signature", "api_key", "token", "session", "csrf_token"):
        return pick(ALNUM, rng.randint(20, 48))
    return password()


def context_positives() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for kind, templates in CONTEXT.items():
        for template in templates:
            secret = context_secret(kind)
            out.append({"kind": kind, "secret": secret, "text": template(secret), "neutral": True})
    return out


# ------------------------------------------------------------------ benign lines

WORDS = [
    "the",
    "order",
    "was",
    "processed",
    "and",
    "shipped",
    "to",
    "the",
    "customer",
    "after",
    "payment",
    "cleared",
    "while",
    "the",
    "warehouse",
    "team",
    "updated",
    "inventory",
    "levels",
    "for",
    "every",
    "region",
    "before",
    "the",
    "weekend",
    "author",
    "editor",
    "reviewed",
    "the",
    "draft",
    "tokenizer",
    "model",
    "outputs",
    "keyboard",
    "layout",
    "monkey",
    "patch",
    "passenger",
    "manifest",
    "secretary",
    "compass",
    "bypass",
    "session",
    "ended",
    "signature",
    "verified",
    "cookies",
    "enabled",
    "authentication",
    "succeeded",
    "tokens",
    "counted",
    "passage",
    "keynote",
    "basic",
    "plan",
    "bearer",
    "bond",
]
PATHS = [
    "/api/v1/orders",
    "/api/v1/users",
    "/healthz",
    "/static/app.js",
    "/cart",
    "/search",
    "/products",
]
PARAMS = [
    "page",
    "per_page",
    "sort",
    "q",
    "lang",
    "utm_source",
    "utm_campaign",
    "category",
    "id",
    "limit",
]
LEVELS = ["INFO", "DEBUG", "WARNING", "ERROR"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "curl/8.5.0",
    "python-requests/2.31.0",
]


def ts() -> str:
    return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}+00:00"


def ip() -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def uuid() -> str:
    h = pick(HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def url() -> str:
    query = "&".join(
        f"{p}={rng.choice([pick(LOWER, 5), str(rng.randint(1, 500)), 'asc', 'en'])}"
        for p in rng.sample(PARAMS, rng.randint(1, 4))
    )
    return f"https://{rng.choice(['shop', 'www', 'api', 'cdn'])}.example.com{rng.choice(PATHS)}?{query}"


def prose() -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))).capitalize() + "."


def logfmt() -> str:
    return (
        f"{ts()} {rng.choice(LEVELS)} app.request method={rng.choice(['GET', 'POST', 'PUT'])} "
        f"path={rng.choice(PATHS)}/{rng.randint(1, 99999)} status={rng.choice([200, 201, 204, 301, 404, 500])} "
        f"duration_ms={rng.random() * 300:.2f} user_id={rng.randint(1, 99999)} request_id={uuid()}"
    )


def json_access() -> str:
    record = {
        "ts": ts(),
        "level": "info",
        "logger": "app.access",
        "event": "request finished",
        "method": rng.choice(["GET", "POST"]),
        "path": rng.choice(PATHS),
        "query": "page=2&per_page=50&sort=-created_at",
        "status": rng.choice([200, 304, 404]),
        "duration_ms": round(rng.random() * 200, 3),
        "bytes": rng.randint(100, 90000),
        "client_ip": ip(),
        "user_agent": rng.choice(AGENTS),
        "referer": url(),
        "request_id": uuid(),
        "trace_id": pick(HEX, 32),
        "span_id": pick(HEX, 16),
        "etag": f'"{pick(HEX, 40)}"',
        "commit": pick(HEX, 40),
        "token_count": rng.randint(1, 4000),
        "max_tokens": rng.choice([256, 1024, 4096]),
        "author": rng.choice(["jane", "omar", "li"]),
    }
    return json.dumps(record)


def etag() -> str:
    value = rng.choice([pick(HEX, 40), pick(HEX, 32), base64.b64encode(rng.randbytes(16)).decode()])
    return rng.choice(
        [
            f'ETag: "{value}"',
            f'ETag: W/"{value}"',
            f'If-None-Match: W/"{value}"',
            f'etag="{value}" status=304',
        ]
    )


def hashes() -> str:
    return rng.choice(
        [
            f"sha256:{pick(HEX, 64)}  dist/launchguard-0.1.0.tar.gz",
            f"Digest: sha-256={base64.b64encode(rng.randbytes(32)).decode()}",
            f"pulled image registry.example.com/web@sha256:{pick(HEX, 64)}",
            f"deployed commit {pick(HEX, 40)} ({pick(HEX, 7)}) to production",
            f"md5={pick(HEX, 32)} size={rng.randint(1, 10**7)}",
        ]
    )


def traceback() -> str:
    frames = "".join(
        f'  File "/srv/app/venv/lib/python3.11/site-packages/{rng.choice(["django", "sqlalchemy", "httpx"])}/{pick(LOWER, 6)}.py", line {rng.randint(1, 900)}, in {rng.choice(["get_response", "execute", "send", "verify_token", "refresh_session"])}\n'
        f"    {rng.choice(['response = self.get_response(request)', 'return self._execute(stmt)', 'raise exc'])}\n"
        for _ in range(rng.randint(2, 4))
    )
    error = rng.choice(
        [
            "ValueError: invalid literal for int() with base 10: 'abc'",
            "KeyError: 'user_id'",
            "httpx.ConnectTimeout: timed out",
            'sqlalchemy.exc.IntegrityError: duplicate key value violates unique constraint "users_email_key"',
            "jwt.exceptions.ExpiredSignatureError: Signature has expired",
        ]
    )
    return "Traceback (most recent call last):\n" + frames + error


def network() -> str:
    return rng.choice(
        [
            f"{ts()} connection from {ip()}:{rng.randint(1024, 65535)} closed after {rng.randint(1, 900)}s",
            f'{ip()} - - [01/May/2024:12:{rng.randint(0, 59):02d}:00 +0000] "GET {rng.choice(PATHS)} HTTP/1.1" 200 {rng.randint(100, 9999)} "-" "{rng.choice(AGENTS)}"',
            f"upstream {ip()}:8080 healthy, latency p95={rng.randint(1, 300)}ms",
            f"listening on [::1]:{rng.randint(1024, 9999)} and 0.0.0.0:{rng.randint(1024, 9999)}",
        ]
    )


def near_miss() -> str:
    return rng.choice(
        [
            f"token_count={rng.randint(1, 9000)} max_tokens=1024 author=jane",
            "password_policy=strict password_min_length=12 session_timeout=1800",
            "auth_method=oidc auth_provider=okta cookie_consent=true secret_name=db-creds",
            f'{{"token_type": "Bearer", "expires_in": {rng.randint(60, 7200)}, "scope": "read write"}}',
            f"cache key=user:{rng.randint(1, 9999)}:profile hit=true",
            "UPDATE users SET password_hash = %s WHERE id = %s",
            f"the session ended after {rng.randint(1, 90)} minutes; signature verified; cookies enabled",
            f"tokenizer vocab_size={rng.randint(1000, 99999)} keyboard=us monkey_patch=false",
            "Error: token expired, please sign in again",
            f"password reset email sent to user {rng.randint(1, 99999)}",
            "csrf protection enabled for /admin",
            f"primary_key=id sort_key=created_at idempotency_key={uuid()}",
            "Basic plan selected; upgrade available",
            f"risk-free trial task-{pick(HEX, 32)} desk-{pick(HEX, 32)}",
            f"image data:image/png;base64,{base64.b64encode(rng.randbytes(60)).decode()}",
            f"mailto:support@example.com replied to ticket #{rng.randint(1, 9999)}",
            f"git@github.com:team/repo.git fetched {pick(HEX, 40)}",
        ]
    )


def sql() -> str:
    return rng.choice(
        [
            "SELECT id, email, created_at FROM users WHERE id = %s",
            f"INSERT INTO orders (user_id, total) VALUES ({rng.randint(1, 999)}, {rng.random() * 100:.2f})",
            "UPDATE sessions SET last_seen = now() WHERE id = $1",
            f"duration: {rng.random() * 90:.3f} ms  statement: SELECT * FROM products LIMIT 50",
        ]
    )


BENIGN: dict[str, Callable[[], str]] = {
    "logfmt": logfmt,
    "json_access": json_access,
    "etag": etag,
    "hash": hashes,
    "uuid": lambda: f"{ts()} job {uuid()} finished in {rng.random() * 9:.2f}s (parent {uuid()})",
    "url": lambda: f"{ts()} fetched {url()} -> {rng.choice([200, 301, 404])}",
    "prose": prose,
    "traceback": traceback,
    "network": network,
    "near_miss": near_miss,
    "sql": sql,
}
WEIGHTS = {"json_access": 1, "traceback": 1}


def benign() -> list[dict[str, object]]:
    names = list(BENIGN)
    weights = [WEIGHTS.get(name, 3) for name in names]
    out = []
    for _ in range(BENIGN_LINES):
        name = rng.choices(names, weights)[0]
        out.append({"category": name, "text": BENIGN[name]()})
    return out


def write(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    write(HERE / "positives.jsonl", token_positives() + context_positives())
    write(HERE / "benign.jsonl", benign())


if __name__ == "__main__":
    main()
