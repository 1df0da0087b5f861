"""Configuration: typed options, environment variables, validation, no import-time effects."""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import fields

import pytest
from prometheus_client import CollectorRegistry

from launchguard import ConfigError, LaunchGuard
from launchguard._config import OTEL_BUCKETS, Config


class TestSources:
    def test_defaults(self) -> None:
        """With nothing given, the documented defaults apply."""
        config = LaunchGuard(environ={}, registry=CollectorRegistry()).config
        assert (config.service, config.metrics_path, config.api_budget) == ("app", "/metrics", 0.3)

    def test_environment_variables(self) -> None:
        """``LAUNCHGUARD_*`` variables set options, parsed to their types."""
        env = {
            "LAUNCHGUARD_SERVICE": "portal",
            "LAUNCHGUARD_RELEASE": "abc123",
            "LAUNCHGUARD_API_BUDGET": "0.2",
            "LAUNCHGUARD_MAX_ROUTES": "50",
            "LAUNCHGUARD_METRICS_ALLOW": "10.0.0.0/8, 127.0.0.1/32",
            "LAUNCHGUARD_METRICS_PATH": "off",
        }
        config = LaunchGuard(environ=env, registry=CollectorRegistry()).config
        assert config.service == "portal"
        assert config.release == "abc123"
        assert config.api_budget == 0.2
        assert config.max_routes == 50
        assert config.metrics_allow == ("10.0.0.0/8", "127.0.0.1/32")
        assert config.metrics_path == ""

    def test_explicit_beats_environment(self) -> None:
        """An explicit keyword wins over the environment."""
        guard = LaunchGuard(
            service="explicit", environ={"LAUNCHGUARD_SERVICE": "env"}, registry=CollectorRegistry()
        )
        assert guard.config.service == "explicit"

    def test_signature_matches_config(self) -> None:
        """Every Config field is a keyword-only LaunchGuard parameter and vice versa."""
        params = inspect.signature(LaunchGuard).parameters
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
        assert set(params) - {"environ"} == {f.name for f in fields(Config)}


class TestValidation:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"metrics_path": "metrics"}, "metrics_path='metrics'"),
            ({"api_budget": -1}, "api_budget=-1"),
            ({"buckets": [0.5, 0.1]}, "strictly increasing"),
            ({"max_routes": 0}, "max_routes=0"),
            ({"metrics_allow": ["not-a-net"]}, "metrics_allow='not-a-net'"),
            ({"service": " "}, "service=' '"),
            ({"exclude_paths": ["health"]}, "exclude_paths='health'"),
        ],
    )
    def test_bad_option_named(self, options: dict[str, object], message: str) -> None:
        """A bad option fails at construction with its name and value in the message."""
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            LaunchGuard(environ={}, registry=CollectorRegistry(), **options)  # type: ignore[arg-type]

    def test_bad_environment_variable_named(self) -> None:
        """A bad environment value names the variable."""
        with pytest.raises(ConfigError, match="LAUNCHGUARD_SLOW_REQUEST='soon'"):
            LaunchGuard(environ={"LAUNCHGUARD_SLOW_REQUEST": "soon"}, registry=CollectorRegistry())

    def test_unknown_settings_key(self) -> None:
        """Django's settings dict with a typo lists the valid options."""
        with pytest.raises(ConfigError, match=r"'sevice'.*valid options: .*service"):
            LaunchGuard.from_settings({"sevice": "x"})


class TestBuckets:
    def test_default_buckets_hold_every_budget(self) -> None:
        """The default buckets are OTel's plus 0.3 (API budget) and any other budget."""
        config = LaunchGuard(environ={}, page_budget=0.8, registry=CollectorRegistry()).config
        assert set(OTEL_BUCKETS) < set(config.histogram_buckets)
        assert {0.3, 0.8, 1.0} <= set(config.histogram_buckets)
        assert list(config.histogram_buckets) == sorted(config.histogram_buckets)


class TestRegistries:
    def test_two_guards_share_families(self) -> None:
        """Two guards on one registry do not fail with duplicated timeseries."""
        registry = CollectorRegistry()
        first = LaunchGuard(environ={}, registry=registry)
        second = LaunchGuard(environ={}, registry=registry)
        assert first.metrics is second.metrics

    def test_new_buckets_replace_families(self) -> None:
        """A guard with other buckets (a reload) replaces the families instead of failing."""
        registry = CollectorRegistry()
        LaunchGuard(environ={}, registry=registry)
        guard = LaunchGuard(environ={}, registry=registry, buckets=[0.1, 1.0])
        assert guard.metrics.buckets == (0.1, 1.0)

    def test_global_registry_twice(self) -> None:
        """The default (global) registry also survives a second guard."""
        LaunchGuard(environ={})
        LaunchGuard(environ={})


def test_import_has_no_side_effects() -> None:
    """Importing launchguard loads neither prometheus_client nor any framework."""
    code = (
        "import sys, launchguard, launchguard.asgi, launchguard.wsgi\n"
        "print(sorted(m for m in ('prometheus_client', 'starlette', 'django', 'flask')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
