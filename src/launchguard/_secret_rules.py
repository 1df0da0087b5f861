"""The secret-redaction rule table: token formats, context patterns and key-name vocabulary.

Data only; the engine that runs it lives in :mod:`launchguard.redact`.

Every token rule starts with a literal prefix, so the ``re`` engine can find candidates with its
fast literal search, and states the *keywords* (literal substrings every match contains) that the
prefilter looks for. A rule runs on a text only when one of its keywords occurs in it, so a
keyword must appear verbatim in every string the rule can match; ``tests/test_redact.py``
checks this for every rule.

Left boundaries are written as a negative look-behind *after* the prefix
(``ghp_(?<![A-Za-z0-9_].{4})``) rather than before it, which keeps the literal prefix first.
Together with greedy bodies over a single character class this keeps every pattern linear:
a candidate inside a longer token is rejected at once instead of rescanning the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "AUTH_HEADER_RE",
    "BARE_VALUE_RE",
    "BASIC_RE",
    "BEARER_RE",
    "BENIGN_QUALIFIERS",
    "CODE_PARAM_RE",
    "CONTEXT_KEYWORDS",
    "CONTEXT_KINDS",
    "COOKIE_ATTRIBUTES",
    "COOKIE_HEADER_RE",
    "DATABASE_SCHEMES",
    "DQ_BODY_RE",
    "ESCAPED_BODY_RE",
    "KEY_QUALIFIERS",
    "KV_HEAD_RE",
    "KV_KEYWORDS",
    "SCHEME_RE",
    "SENSITIVE_EXACT",
    "SQ_BODY_RE",
    "SUFFIX_KINDS",
    "TOKEN_KINDS",
    "TOKEN_RULES",
    "URL_USERINFO_RE",
    "TokenRule",
]


@dataclass(frozen=True)
class TokenRule:
    """A secret format recognisable by its own shape (a literal prefix and a body)."""

    kind: str
    pattern: re.Pattern[str]
    keywords: tuple[str, ...]
    """Case-sensitive literals; every match of ``pattern`` contains at least one of them."""
    description: str
    group: str | int = 0
    """The part of the match that is masked (the named group ``secret`` when there is one)."""
    requires: tuple[str, ...] = ()
    """Lower-case words of which one must also occur in the text (context for weak formats)."""
    keywords_ci: tuple[str, ...] = ()
    """Lower-case keywords matched case-insensitively (for prefixes without a rare character)."""


def _after(width: int, cls: str) -> str:
    """A left boundary written after a ``width``-character prefix: no ``cls`` char before it."""
    return f"(?<![{cls}].{{{width}}})"


_B64URL = "A-Za-z0-9_\\-"
_ALNUM = "A-Za-z0-9"
_WORD = "A-Za-z0-9_"


def _rule(
    kind: str,
    pattern: str,
    keywords: tuple[str, ...],
    description: str,
    *,
    requires: tuple[str, ...] = (),
    keywords_ci: tuple[str, ...] = (),
) -> TokenRule:
    compiled = re.compile(pattern)
    group: str | int = "secret" if "secret" in compiled.groupindex else 0
    return TokenRule(kind, compiled, keywords, description, group, requires, keywords_ci)


def _prefixed(
    kind: str,
    prefix: str,
    body: str,
    description: str,
    *,
    boundary: str = _WORD,
    tail: str | None = None,
    requires: tuple[str, ...] = (),
) -> TokenRule:
    """A rule for ``prefix`` + ``body``; ``prefix`` is a plain literal and the only keyword."""
    pattern = re.escape(prefix) + _after(len(prefix), boundary) + body
    if tail is not None:
        pattern += f"(?![{tail}])"
    return _rule(kind, pattern, (prefix,), description, requires=requires)


_PEM_NAME = r"[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_BODY = r"[A-Za-z0-9+/=\s\\:,.]*(?:-{1,4}[A-Za-z0-9+/=\s\\:,.]+)*"

TOKEN_RULES: tuple[TokenRule, ...] = (
    # ---- cloud providers
    _rule(
        "aws_access_key_id",
        "(?:AKIA|ASIA|ABIA|ACCA)" + _after(4, _ALNUM) + "[A-Z0-9]{16}(?![A-Za-z0-9])",
        ("AKIA", "ASIA", "ABIA", "ACCA"),
        "AWS access key id (AKIA/ASIA/ABIA/ACCA + 16)",
    ),
    _prefixed(
        "google_api_key",
        "AIza",
        "[0-9A-Za-z_\\-]{35}",
        "Google API key (AIza + 35)",
        boundary=_B64URL,
        tail=_B64URL,
    ),
    _prefixed(
        "google_oauth_client_secret",
        "GOCSPX-",
        "[0-9A-Za-z_\\-]{28,}",
        "Google OAuth client secret (GOCSPX-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "google_oauth_access_token",
        "ya29.",
        "[0-9A-Za-z_\\-]{20,}",
        "Google OAuth access token (ya29.)",
        boundary=_B64URL + ".",
    ),
    _rule(
        "azure_ad_client_secret",
        "(?<![A-Za-z0-9_~.\\-])[A-Za-z0-9_~.\\-]{3}[0-9]Q~[A-Za-z0-9_~.\\-]{31,34}"
        "(?![A-Za-z0-9_~.\\-])",
        ("Q~",),
        "Azure AD client secret (3 chars, digit, Q~, 31-34 chars)",
    ),
    _prefixed(
        "alibaba_access_key_id",
        "LTAI",
        "[A-Za-z0-9]{12,20}",
        "Alibaba Cloud AccessKey id (LTAI)",
        boundary=_ALNUM,
        tail=_ALNUM,
    ),
    _prefixed(
        "digitalocean_pat",
        "dop_v1_",
        "[a-f0-9]{64}",
        "DigitalOcean personal access token (dop_v1_ + 64 hex)",
        tail=_WORD,
    ),
    _prefixed(
        "digitalocean_oauth_token",
        "doo_v1_",
        "[a-f0-9]{64}",
        "DigitalOcean OAuth token (doo_v1_ + 64 hex)",
        tail=_WORD,
    ),
    _prefixed(
        "digitalocean_refresh_token",
        "dor_v1_",
        "[a-f0-9]{64}",
        "DigitalOcean OAuth refresh token (dor_v1_ + 64 hex)",
        tail=_WORD,
    ),
    _rule(
        "databricks_token",
        "dapi" + _after(4, _B64URL) + "[a-f0-9]{32}(?:-[0-9]+)?(?![A-Za-z0-9_])",
        (),
        "Databricks personal access token (dapi + 32 hex)",
        keywords_ci=("dapi",),
    ),
    _prefixed(
        "heroku_api_key",
        "HRKU-AA",
        "[0-9A-Za-z_\\-]{40,}",
        "Heroku API key (HRKU-AA)",
        boundary=_B64URL,
    ),
    _rule(
        "terraform_cloud_token",
        "(?<![A-Za-z0-9])[A-Za-z0-9]{14}\\.atlasv1\\.[A-Za-z0-9_=\\-]{60,}",
        (".atlasv1.",),
        "Terraform Cloud / HCP API token (.atlasv1.)",
    ),
    _prefixed(
        "pulumi_access_token",
        "pul-",
        "[a-f0-9]{40}",
        "Pulumi access token (pul- + 40 hex)",
        boundary=_B64URL,
        tail=_WORD,
    ),
    _prefixed(
        "supabase_token",
        "sbp_",
        "[a-f0-9]{40}",
        "Supabase personal access token (sbp_ + 40 hex)",
        tail=_WORD,
    ),
    _rule(
        "planetscale_token",
        "pscale_" + _after(7, _WORD) + "(?:tkn|oauth)_[A-Za-z0-9_.\\-]{32,}",
        ("pscale_",),
        "PlanetScale service token (pscale_tkn_)",
    ),
    _rule(
        "planetscale_password",
        "pscale_" + _after(7, _WORD) + "pw_[A-Za-z0-9_.\\-]{32,}",
        ("pscale_",),
        "PlanetScale database password (pscale_pw_)",
    ),
    # ---- source control and CI
    _prefixed("github_token", "ghp_", "[A-Za-z0-9]{36,}", "GitHub classic PAT (ghp_)"),
    _prefixed("github_oauth_token", "gho_", "[A-Za-z0-9]{36,}", "GitHub OAuth token (gho_)"),
    _prefixed(
        "github_user_to_server_token",
        "ghu_",
        "[A-Za-z0-9]{36,}",
        "GitHub App user-to-server token (ghu_)",
    ),
    _prefixed(
        "github_server_to_server_token",
        "ghs_",
        "[A-Za-z0-9]{36,}",
        "GitHub App installation token (ghs_)",
    ),
    _prefixed("github_refresh_token", "ghr_", "[A-Za-z0-9]{36,}", "GitHub refresh token (ghr_)"),
    _prefixed(
        "github_fine_grained_token",
        "github_pat_",
        "[A-Za-z0-9_]{50,}",
        "GitHub fine-grained PAT (github_pat_)",
    ),
    _prefixed(
        "gitlab_token",
        "glpat-",
        "[A-Za-z0-9_.\\-]{20,}",
        "GitLab personal access token (glpat-)",
        boundary=_B64URL + ".",
    ),
    _prefixed(
        "gitlab_runner_token",
        "glrt-",
        "[A-Za-z0-9_.\\-]{20,}",
        "GitLab runner token (glrt-)",
        boundary=_B64URL + ".",
    ),
    _prefixed(
        "gitlab_deploy_token",
        "gldt-",
        "[A-Za-z0-9_.\\-]{20,}",
        "GitLab deploy token (gldt-)",
        boundary=_B64URL + ".",
    ),
    _prefixed(
        "gitlab_pipeline_trigger_token",
        "glptt-",
        "[A-Za-z0-9_\\-]{20,}",
        "GitLab pipeline trigger token (glptt-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "bitbucket_app_password",
        "ATBB",
        "[A-Za-z0-9_=.\\-]{32,}",
        "Bitbucket app password (ATBB)",
        boundary=_B64URL,
    ),
    _prefixed(
        "atlassian_api_token",
        "ATATT3",
        "[A-Za-z0-9_=\\-]{50,}",
        "Atlassian API token (ATATT3)",
        boundary=_B64URL,
    ),
    _prefixed("npm_token", "npm_", "[A-Za-z0-9]{36,}", "npm access token (npm_ + 36)"),
    _prefixed(
        "pypi_token",
        "pypi-AgEIcHlwaS5vcmc",
        "[A-Za-z0-9_\\-]{50,}",
        "PyPI API token (pypi-AgEIcHlwaS5vcmc)",
        boundary=_B64URL,
    ),
    _prefixed(
        "docker_hub_token",
        "dckr_pat_",
        "[A-Za-z0-9_\\-]{27,}",
        "Docker Hub personal access token (dckr_pat_)",
        boundary=_B64URL,
    ),
    _prefixed(
        "vault_service_token",
        "hvs.",
        "[A-Za-z0-9_\\-]{24,}",
        "HashiCorp Vault service token (hvs.)",
        boundary=_B64URL + ".",
    ),
    _prefixed(
        "vault_batch_token",
        "hvb.",
        "[A-Za-z0-9_\\-]{24,}",
        "HashiCorp Vault batch token (hvb.)",
        boundary=_B64URL + ".",
    ),
    _prefixed(
        "doppler_token",
        "dp.",
        "(?:pt|st|ct|sa|scim|audit)\\.[A-Za-z0-9]{40,}",
        "Doppler token (dp.pt. / dp.st. / dp.ct. / dp.sa. ...)",
        boundary=_B64URL + ".",
    ),
    _prefixed(
        "tailscale_key",
        "tskey-",
        "(?:api|auth|client|scim|webhook)-[A-Za-z0-9]+-[A-Za-z0-9]{20,}",
        "Tailscale API / auth key (tskey-)",
        boundary=_B64URL,
    ),
    # ---- chat, mail and messaging
    _prefixed(
        "slack_bot_token",
        "xoxb-",
        "[0-9A-Za-z\\-]{10,}",
        "Slack bot token (xoxb-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "slack_user_token",
        "xoxp-",
        "[0-9A-Za-z\\-]{10,}",
        "Slack user token (xoxp-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "slack_workspace_token",
        "xoxa-",
        "[0-9A-Za-z\\-]{10,}",
        "Slack workspace access token (xoxa-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "slack_refresh_token",
        "xoxr-",
        "[0-9A-Za-z\\-]{10,}",
        "Slack refresh token (xoxr-)",
        boundary=_B64URL,
    ),
    _rule(
        "slack_config_token",
        "xoxe" + _after(4, _B64URL) + "(?:-|\\.xox[bp]-)[0-9A-Za-z\\-]{10,}",
        ("xoxe-", "xoxe."),
        "Slack configuration token (xoxe- / xoxe.xoxp-)",
    ),
    _prefixed(
        "slack_legacy_token",
        "xoxs-",
        "[0-9A-Za-z\\-]{10,}",
        "Slack legacy workspace token (xoxs-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "slack_app_token",
        "xapp-",
        "[0-9A-Za-z\\-]{10,}",
        "Slack app-level token (xapp-)",
        boundary=_B64URL,
    ),
    _rule(
        "slack_webhook_url",
        "hooks\\.slack\\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/+\\-]{20,})",
        ("hooks.slack.com",),
        "Slack incoming webhook URL path",
    ),
    _rule(
        "discord_webhook_url",
        "discord(?:app)?\\.com/api/webhooks/[0-9]{5,}/(?P<secret>[A-Za-z0-9_\\-]{40,})",
        (),
        "Discord webhook token (/api/webhooks/<id>/<token>)",
        keywords_ci=("discord",),
    ),
    _rule(
        "telegram_bot_token",
        ":(?<=[0-9]{6}:)(?P<secret>AA[0-9A-Za-z_\\-]{33})(?![0-9A-Za-z_\\-])",
        (":AA",),
        "Telegram bot token (<bot id>:AA + 33)",
    ),
    _prefixed(
        "twilio_api_key",
        "SK",
        "[0-9a-fA-F]{32}",
        "Twilio API key SID (SK + 32 hex)",
        tail=_WORD,
    ),
    _rule(
        "sendgrid_api_key",
        "SG\\." + _after(3, _B64URL + ".") + "[0-9A-Za-z_\\-]{22}\\.[0-9A-Za-z_\\-]{43}"
        "(?![0-9A-Za-z_\\-])",
        ("SG.",),
        "SendGrid API key (SG.22.43)",
    ),
    _rule(
        "mailgun_api_key",
        "key-" + _after(4, _B64URL) + "[0-9a-f]{32}(?![0-9A-Za-z_\\-])",
        (),
        "Mailgun API key (key- + 32 hex, with 'mailgun' in the text)",
        requires=("mailgun",),
        keywords_ci=("mailgun",),
    ),
    _prefixed(
        "postman_api_key",
        "PMAK-",
        "[a-f0-9]{24}-[a-f0-9]{34}",
        "Postman API key (PMAK-)",
        boundary=_B64URL,
        tail=_WORD,
    ),
    _prefixed("linear_api_key", "lin_api_", "[A-Za-z0-9]{40,}", "Linear API key (lin_api_)"),
    _prefixed("notion_token", "ntn_", "[A-Za-z0-9]{40,}", "Notion integration token (ntn_)"),
    _prefixed(
        "figma_token",
        "figd_",
        "[A-Za-z0-9_\\-]{40,}",
        "Figma personal access token (figd_)",
        boundary=_B64URL,
    ),
    _prefixed(
        "contentful_token",
        "CFPAT-",
        "[A-Za-z0-9_\\-]{43,}",
        "Contentful personal access token (CFPAT-)",
        boundary=_B64URL,
    ),
    # ---- payments and commerce
    _rule(
        "stripe_secret_key",
        "sk_" + _after(3, _WORD) + "(?:live|test)_[0-9A-Za-z]{16,}",
        ("sk_live_", "sk_test_"),
        "Stripe secret key (sk_live_ / sk_test_)",
    ),
    _rule(
        "stripe_restricted_key",
        "rk_" + _after(3, _WORD) + "(?:live|test)_[0-9A-Za-z]{16,}",
        ("rk_live_", "rk_test_"),
        "Stripe restricted key (rk_live_ / rk_test_)",
    ),
    _prefixed(
        "stripe_webhook_secret",
        "whsec_",
        "[A-Za-z0-9+/=]{24,}",
        "Stripe webhook signing secret (whsec_)",
    ),
    _prefixed(
        "square_access_token",
        "EAAA",
        "[A-Za-z0-9_\\-]{40,}",
        "Square access token (EAAA)",
        boundary=_B64URL,
    ),
    _prefixed(
        "square_legacy_access_token",
        "sq0atp-",
        "[0-9A-Za-z_\\-]{22,}",
        "Square legacy access token (sq0atp-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "square_oauth_secret",
        "sq0csp-",
        "[0-9A-Za-z_\\-]{43,}",
        "Square OAuth application secret (sq0csp-)",
        boundary=_B64URL,
    ),
    _prefixed(
        "shopify_access_token",
        "shpat_",
        "[a-fA-F0-9]{32}",
        "Shopify access token (shpat_ + 32 hex)",
        tail=_WORD,
    ),
    _prefixed(
        "shopify_custom_app_token",
        "shpca_",
        "[a-fA-F0-9]{32}",
        "Shopify custom app access token (shpca_ + 32 hex)",
        tail=_WORD,
    ),
    _prefixed(
        "shopify_private_app_token",
        "shppa_",
        "[a-fA-F0-9]{32}",
        "Shopify private app access token (shppa_ + 32 hex)",
        tail=_WORD,
    ),
    _prefixed(
        "shopify_shared_secret",
        "shpss_",
        "[a-fA-F0-9]{32}",
        "Shopify shared secret (shpss_ + 32 hex)",
        tail=_WORD,
    ),
    # ---- AI providers
    _rule(
        "anthropic_api_key",
        "sk-" + _after(3, _B64URL) + "ant-api03-[A-Za-z0-9_\\-]{40,}",
        ("sk-",),
        "Anthropic API key (sk-ant-api03-)",
    ),
    _rule(
        "anthropic_admin_key",
        "sk-" + _after(3, _B64URL) + "ant-admin01-[A-Za-z0-9_\\-]{40,}",
        ("sk-",),
        "Anthropic admin key (sk-ant-admin01-)",
    ),
    _rule(
        "openai_api_key",
        "sk-" + _after(3, _B64URL) + "(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_\\-]{20,}"
        "|[A-Za-z0-9]{20,}T3BlbkFJ[A-Za-z0-9]{20,}(?![A-Za-z0-9]))",
        ("sk-",),
        "OpenAI API key (sk-proj- / sk-svcacct- / sk-...T3BlbkFJ...)",
    ),
    _rule(
        "sk_api_key",
        "sk-" + _after(3, _B64URL) + "[A-Za-z0-9]{32,}(?![A-Za-z0-9_\\-])",
        ("sk-",),
        "Other sk- + 32 alphanumeric API keys (DeepSeek, Moonshot, ...)",
    ),
    _prefixed(
        "huggingface_token",
        "hf_",
        "[A-Za-z0-9]{34,}",
        "Hugging Face access token (hf_ + 34)",
    ),
    _prefixed("groq_api_key", "gsk_", "[A-Za-z0-9]{52,}", "Groq API key (gsk_ + 52)"),
    _prefixed("replicate_api_token", "r8_", "[A-Za-z0-9]{37,}", "Replicate API token (r8_ + 37)"),
    _prefixed(
        "perplexity_api_key",
        "pplx-",
        "[A-Za-z0-9]{48,}",
        "Perplexity API key (pplx- + 48)",
        boundary=_B64URL,
    ),
    _prefixed(
        "xai_api_key",
        "xai-",
        "[A-Za-z0-9]{80,}",
        "xAI API key (xai- + 80)",
        boundary=_B64URL,
    ),
    # ---- observability and secret managers
    _prefixed(
        "sentry_user_token",
        "sntryu_",
        "[a-f0-9]{64}",
        "Sentry user auth token (sntryu_ + 64 hex)",
        tail=_WORD,
    ),
    _prefixed(
        "sentry_org_token",
        "sntrys_",
        "eyJ[A-Za-z0-9+/=_\\-]{30,}",
        "Sentry organization token (sntrys_eyJ...)",
    ),
    _prefixed(
        "grafana_service_account_token",
        "glsa_",
        "[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
        "Grafana service account token (glsa_)",
        tail=_WORD,
    ),
    _prefixed(
        "grafana_cloud_token",
        "glc_",
        "[A-Za-z0-9+/]{32,}={0,2}",
        "Grafana Cloud access policy token (glc_)",
    ),
    _prefixed(
        "new_relic_user_api_key",
        "NRAK-",
        "[A-Z0-9]{27}",
        "New Relic user API key (NRAK- + 27)",
        boundary=_B64URL,
        tail=_ALNUM,
    ),
    _rule(
        "dynatrace_token",
        "dt0c01\\." + _after(7, _ALNUM) + "[A-Z0-9]{24}\\.[A-Z0-9]{64}(?![A-Za-z0-9])",
        ("dt0c01.",),
        "Dynatrace API token (dt0c01.)",
    ),
    _prefixed(
        "onepassword_service_account_token",
        "ops_eyJ",
        "[A-Za-z0-9+/=_\\-]{50,}",
        "1Password service account token (ops_eyJ)",
    ),
    _prefixed(
        "age_secret_key",
        "AGE-SECRET-KEY-1",
        "[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
        "age encryption secret key (AGE-SECRET-KEY-1)",
        boundary=_B64URL,
    ),
    # ---- structured formats
    _rule(
        "private_key",
        "-----BEGIN" + _PEM_NAME + _PEM_BODY + "(?:-----END" + _PEM_NAME + ")?",
        ("-----BEGIN",),
        "PEM / OpenSSH / PGP private key block (multi-line)",
    ),
    _rule(
        "mapbox_secret_token",
        "sk\\.eyJ" + _after(6, _B64URL) + "[A-Za-z0-9_\\-]{20,}\\.[A-Za-z0-9_\\-]{20,}",
        ("sk.eyJ",),
        "Mapbox secret token (sk.eyJ...)",
    ),
    _rule(
        "jwt",
        "eyJ"
        + _after(3, _B64URL)
        + "[A-Za-z0-9_\\-]{5,}={0,2}\\.[A-Za-z0-9_\\-]{5,}={0,2}\\.[A-Za-z0-9_\\-]*={0,2}"
        "(?:\\.[A-Za-z0-9_\\-]*){0,2}",
        ("eyJ",),
        "JSON Web Token / JWE (eyJ...eyJ...sig)",
    ),
)


# ---------------------------------------------------------------------------------------------
# Context rules. They run on an ASCII-lower-cased projection of the text (same length, non-ASCII
# characters replaced by "?"), so they use lower-case literals and the fast literal search; the
# engine reads the masked values from the original text at the same offsets.

KV_KEYWORDS: tuple[str, ...] = (
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "sess",
    "cookie",
    "csrf",
    "xsrf",
    "sig",
    "cred",
)
"""Substrings (lower case) that start the ``key = value`` search; the key name decides."""

KV_HEAD_RE = re.compile(
    r"(?P<rest>[a-z0-9_.\-]{0,48})(?P<kq>\\?[\"'])?[ \t]{0,4}(?P<sep>=>|:=|[:=])[ \t]{0,4}",
    re.ASCII,
)
"""What follows a keyword in ``key = value``: the rest of the key, a quote, the separator."""

DQ_BODY_RE = re.compile(r'[^"\\\r\n]*(?:\\.[^"\\\r\n]*)*', re.ASCII)
SQ_BODY_RE = re.compile(r"[^'\\\r\n]*(?:\\.[^'\\\r\n]*)*", re.ASCII)
ESCAPED_BODY_RE = re.compile(r'[^"\\\r\n]*', re.ASCII)
BARE_VALUE_RE = re.compile(r"[^\s\"'`<>&;,]+(?:,[^\s\"'`<>&;,]+)*", re.ASCII)
"""An unquoted value ends at whitespace, a quote, ``<>&;`` or a comma followed by a space."""


CODE_PARAM_RE = re.compile(
    r"code=(?<=[?&;]code=)(?P<v4>[^\s\"'`<>&#;,]{16,})",
    re.ASCII,
)
"""OAuth ``code=`` query parameter (16+ chars; short ``code=`` values are left alone)."""

URL_USERINFO_RE = re.compile(
    r"://(?P<user>[^\s:@/?#\"'<>\[\]]*):(?P<pw>[^\s/?#\"'<>]*)@",
    re.ASCII,
)
"""``scheme://user:password@host``: the password is masked, the user kept."""

SCHEME_RE = re.compile(r"([a-z][a-z0-9+.\-]*)\Z", re.ASCII)

AUTH_HEADER_RE = re.compile(
    r"authorization(?P<kq>\\?[\"'])?[ \t]*[:=][ \t]*",
    re.ASCII,
)
"""``Authorization:`` / ``Proxy-Authorization:`` (and quoted JSON keys); the value is parsed."""

COOKIE_HEADER_RE = re.compile(
    r"cookie(?P<kq>\\?[\"'])?[ \t]*[:=][ \t]*",
    re.ASCII,
)
"""``Cookie:`` / ``Set-Cookie:``; every cookie value is masked, names and attributes kept."""

BEARER_RE = re.compile(
    r"bearer[ \t]+(?P<cred>[a-z0-9\-._~+/]{8,}=*)(?![a-z0-9\-._~+/=])",
    re.ASCII,
)
BASIC_RE = re.compile(
    r"basic[ \t]+(?P<cred>[a-z0-9+/]{6,}={0,2})(?![a-z0-9+/=])",
    re.ASCII,
)

CONTEXT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "url_userinfo": ("@",),
    "authorization_header": ("auth",),
    "cookie_header": ("cookie",),
    "bearer": ("bearer",),
    "basic": ("basic",),
    "code_param": ("code=",),
    "key_value": KV_KEYWORDS,
}
"""Case-insensitive keywords that gate each context rule."""

DATABASE_SCHEMES = frozenset(
    {
        "postgres",
        "postgresql",
        "pgsql",
        "psql",
        "mysql",
        "mariadb",
        "mysqlx",
        "redis",
        "rediss",
        "valkey",
        "mongodb",
        "amqp",
        "amqps",
        "mssql",
        "sqlserver",
        "oracle",
        "cockroachdb",
        "clickhouse",
        "cassandra",
        "couchdb",
        "neo4j",
        "memcached",
        "nats",
        "kafka",
        "elasticsearch",
        "snowflake",
        "db2",
        "jdbc",
    }
)

COOKIE_ATTRIBUTES = frozenset(
    {
        "path",
        "domain",
        "expires",
        "max-age",
        "samesite",
        "secure",
        "httponly",
        "priority",
        "partitioned",
        "version",
        "comment",
    }
)

# ---------------------------------------------------------------------------------------------
# Key-name vocabulary (names are normalised: camelCase split, lower case, "-" "." " " -> "_").

TOKEN_KINDS: dict[str, str] = {
    **dict.fromkeys(("password", "passwd", "pwd", "pass", "passphrase", "passcode"), "password"),
    "privatekey": "private_key",
    "apikey": "api_key",
    **dict.fromkeys(("secret", "secrets"), "secret"),
    **dict.fromkeys(("csrf", "xsrf", "csrftoken", "xsrftoken"), "csrf_token"),
    **dict.fromkeys(("session", "sessionid", "sessid", "phpsessid", "jsessionid"), "session"),
    **dict.fromkeys(("cookie", "cookies"), "cookie"),
    **dict.fromkeys(("signature", "sig"), "signature"),
    **dict.fromkeys(("credential", "credentials", "creds"), "credential"),
    **dict.fromkeys(("auth", "authorization"), "authorization"),
    "bearer": "bearer_token",
    **dict.fromkeys(("token", "jwt"), "token"),
}
"""A name token (trailing digits ignored) that makes a key sensitive, and the mask kind."""

SUFFIX_KINDS: tuple[tuple[str, str], ...] = (
    ("password", "password"),
    ("passwd", "password"),
    ("passphrase", "password"),
    ("privatekey", "private_key"),
    ("apikey", "api_key"),
    ("secret", "secret"),
    ("sessionid", "session"),
    ("sessid", "session"),
    ("credential", "credential"),
    ("credentials", "credential"),
    ("token", "token"),
)
"""Run-together names ending in one of these are sensitive too (``dbpassword``, ``authtoken``)."""

KEY_QUALIFIERS = frozenset(
    {
        "api",
        "secret",
        "private",
        "access",
        "signing",
        "encryption",
        "master",
        "client",
        "auth",
        "session",
        "app",
        "account",
        "consumer",
        "license",
        "subscription",
        "webhook",
        "hmac",
        "shared",
        "ssh",
        "service",
        "storage",
        "admin",
        "deploy",
        "sas",
    }
)
"""``key`` is sensitive after one of these (``api_key``, ``AccountKey``, ``secret-key``)."""

SECRET_KEY_QUALIFIERS = frozenset(
    {"secret", "signing", "encryption", "master", "hmac", "shared", "ssh"}
)
"""Qualifiers that make ``<qualifier>_key`` a ``secret_key`` rather than an ``api_key``."""

SENSITIVE_EXACT = frozenset(
    {"proxy_authorization", "set_cookie", "connect_sid", "x_api_key", "mysql_pwd"}
)

BENIGN_QUALIFIERS = frozenset(
    {
        "count",
        "counts",
        "total",
        "type",
        "types",
        "kind",
        "length",
        "len",
        "size",
        "limit",
        "limits",
        "max",
        "min",
        "ttl",
        "timeout",
        "duration",
        "expires",
        "expiry",
        "expiration",
        "expired",
        "lifetime",
        "age",
        "at",
        "date",
        "time",
        "timestamp",
        "created",
        "updated",
        "changed",
        "reset",
        "rotated",
        "name",
        "names",
        "label",
        "url",
        "uri",
        "endpoint",
        "path",
        "file",
        "filename",
        "dir",
        "arn",
        "header",
        "field",
        "param",
        "policy",
        "rules",
        "required",
        "enabled",
        "disabled",
        "set",
        "valid",
        "strength",
        "provider",
        "method",
        "methods",
        "scheme",
        "algorithm",
        "alg",
        "format",
        "mode",
        "version",
        "usage",
        "used",
        "consent",
        "source",
        "prefix",
        "error",
        "errors",
        "status",
    }
)
"""Tokens after the sensitive one that make the key describe the secret, not hold it."""

CONTEXT_KINDS: tuple[str, ...] = (
    "password",
    "secret",
    "secret_key",
    "token",
    "api_key",
    "credential",
    "session",
    "cookie",
    "csrf_token",
    "signature",
    "authorization",
    "bearer_token",
    "basic_auth",
    "url_password",
    "database_password",
    "aws_secret_access_key",
    "oauth_code",
    "sensitive_key",
)
"""Kinds used by the context rules (key names, URLs, headers)."""
