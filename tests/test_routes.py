"""Route template conversion for Django and Flask, and the label cap."""

from __future__ import annotations

import pytest

from launchguard.routes import OVERFLOW, RouteLabels, django_template, flask_template


class TestDjangoTemplate:
    @pytest.mark.parametrize(
        ("route", "template"),
        [
            ("", "/"),
            ("articles/<int:year>/", "/articles/{year}/"),
            ("api/customers/<slug:slug>/invoices/<uuid:pk>", "/api/customers/{slug}/invoices/{pk}"),
            ("<year>/", "/{year}/"),
            (r"^archive/(?P<year>[0-9]{4})/$", "/archive/{year}/"),
            (r"^blog/(?P<slug>[\w-]+)/comments/(?P<pk>\d+)/$", "/blog/{slug}/comments/{pk}/"),
            (r"^files/(.+)$", "/files/{arg}"),
            (r"^a/(\d+)/b/(\d+)/$", "/a/{arg}/b/{arg2}/"),
            (r"^(?:en|de)/about/$", "/{arg}/about/"),
            (r"^page/(?P<n>(?:\d+))/?$", "/page/{n}/"),
            (r"^static\.json$", "/static.json"),
            ("api/^v1/(?P<pk>[0-9]+)/$", "/api/v1/{pk}/"),
        ],
    )
    def test_templates(self, route: str, template: str) -> None:
        """path() and re_path() routes become readable ``{name}`` templates."""
        assert django_template(route) == template


class TestFlaskTemplate:
    @pytest.mark.parametrize(
        ("rule", "template"),
        [
            ("/", "/"),
            ("/users/<int:user_id>", "/users/{user_id}"),
            ("/files/<path:name>", "/files/{name}"),
            ("/<lang>/about", "/{lang}/about"),
        ],
    )
    def test_templates(self, rule: str, template: str) -> None:
        """Werkzeug converters become ``{name}`` placeholders."""
        assert flask_template(rule) == template


class TestRouteLabels:
    def test_cap(self) -> None:
        """Past the cap every new template is the overflow label; known ones stay."""
        labels = RouteLabels(max_routes=2, unmatched="__unmatched__")
        assert labels.admit("/a") == "/a"
        assert labels.admit("/b") == "/b"
        assert labels.admit("/c") == OVERFLOW
        assert labels.admit("/a") == "/a"
        assert len(labels) == 2

    def test_long_template_truncated(self) -> None:
        """A huge template is truncated so a label stays small."""
        labels = RouteLabels(max_routes=10, unmatched="__unmatched__")
        assert len(labels.admit("/" + "x" * 10_000)) == 256
