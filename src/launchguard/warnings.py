"""Warning categories for findings, so a test suite can turn them into errors.

    # pytest.ini / pyproject.toml
    filterwarnings = ["error::launchguard.warnings.NPlusOneWarning"]

They are only raised when the guard is built with ``warn_findings=True`` (the pytest plugin's
``--launchguard-strict`` does that for you); in production findings go to logs and metrics.
"""

from __future__ import annotations

__all__ = [
    "CacheHeaderWarning",
    "HeaderWarning",
    "LaunchGuardWarning",
    "NPlusOneWarning",
    "QueryWarning",
    "SecurityHeaderWarning",
]


class LaunchGuardWarning(Warning):
    """Base class of every warning launchguard raises."""


class QueryWarning(LaunchGuardWarning):
    """A request's database statements show a problem (duplicate, chatty, slow)."""


class NPlusOneWarning(QueryWarning):
    """One SELECT shape was issued many times from the same line: an N+1 query."""


class HeaderWarning(LaunchGuardWarning):
    """A response's headers break a lint rule (see ``launchguard.lint.RULES``)."""


class CacheHeaderWarning(HeaderWarning):
    """A caching problem: a shared cache may store a private page, no policy, bad syntax..."""


class SecurityHeaderWarning(HeaderWarning):
    """A missing or weak security header, or a cookie without Secure / HttpOnly / SameSite."""
