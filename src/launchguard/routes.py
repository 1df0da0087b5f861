"""Route templates: the low-cardinality ``http_route`` label, never the raw path.

- Starlette and FastAPI: read after routing from the scope the router filled in
  (``scope["route"]``, mount prefixes from ``root_path``), never by re-matching the URL.
- Django: ``request.resolver_match.route``; ``re_path`` regexes become ``{name}`` templates.
- Flask: ``request.url_rule.rule``; ``<int:id>`` becomes ``{id}``.

Every framework's template is written the same way (``/api/articles/{slug}``), so one dashboard
serves all. Requests that matched nothing share one label, and the number of distinct labels is
capped, so cardinality stays bounded whatever URLs arrive.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from ._config import RouteResolver

__all__ = ["AsgiRoutes", "RouteLabels", "django_template", "flask_template"]

OVERFLOW = "__overflow__"
_MAX_LABEL_LENGTH = 256
_FLASK_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_DJANGO_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_STARLETTE_PARAM = re.compile(r"{([^{}:]+)(?::[^{}]+)?}")


class RouteLabels:
    """Admits route templates as labels, up to ``max_routes`` of them."""

    def __init__(self, *, max_routes: int, unmatched: str) -> None:
        self.unmatched = unmatched
        self._max = max_routes
        self._labels: dict[str, str] = {}
        self._lock = threading.Lock()

    def admit(self, template: str) -> str:
        """The label for ``template``: itself while under the cap, else ``__overflow__``."""
        label = self._labels.get(template)
        if label is not None:
            return label
        with self._lock:
            label = self._labels.get(template)  # admitted by another thread meanwhile
            if label is not None:
                return label
            if len(self._labels) >= self._max:
                return OVERFLOW
            label = template[:_MAX_LABEL_LENGTH] if template else self.unmatched
            self._labels[template] = label
            return label

    def __len__(self) -> int:
        return len(self._labels)


def flask_template(rule: str) -> str:
    """``/users/<int:user_id>`` -> ``/users/{user_id}``."""
    return _FLASK_PARAM.sub(r"{\1}", rule)


def django_template(route: str) -> str:
    """A Django resolver route (``path()`` or ``re_path()``, includes joined) as a template.

    ``articles/<int:year>/`` -> ``/articles/{year}/``;
    ``^archive/(?P<year>[0-9]{4})/$`` -> ``/archive/{year}/``.
    """
    out: list[str] = []
    i, n = 0, len(route)
    unnamed = 0
    while i < n:
        ch = route[i]
        if ch == "\\" and i + 1 < n:
            out.append(route[i + 1])
            i += 2
        elif ch == "(":
            end = _group_end(route, i)
            body = route[i + 1 : end]
            if body.startswith("?P<"):
                out.append("{" + body[3 : body.index(">")] + "}" if ">" in body else "{arg}")
            elif body.startswith("?:") or not body.startswith("?"):
                unnamed += 1
                out.append(f"{{arg{unnamed}}}" if unnamed > 1 else "{arg}")
            # lookarounds and flags, ``(?=...)``, ``(?i)``: contribute nothing
            i = end + 1
            if i < n and route[i] in "?*+":
                i += 1
        elif ch in "^$":
            i += 1
        elif ch in "?*+" or (ch == "{" and _is_quantifier(route, i)):
            i = route.index("}", i) + 1 if ch == "{" else i + 1
        elif ch == "[":
            end = route.find("]", i + 1)
            i = n if end < 0 else end + 1
            out.append("{arg}")
        elif ch == ".":
            out.append("{arg}")
            i += 1
        else:
            out.append(ch)
            i += 1
    template = _DJANGO_PARAM.sub(r"{\1}", "".join(out))
    return template if template.startswith("/") else "/" + template


def _group_end(text: str, start: int) -> int:
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            close = text.find("]", i + 1)
            i = len(text) if close < 0 else close + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text) - 1


def _is_quantifier(text: str, i: int) -> bool:
    return re.match(r"\{\d*(,\d*)?\}", text[i:]) is not None


#: Most route objects whose label ``AsgiRoutes`` remembers.
_MAX_KNOWN_ROUTES = 4096


class AsgiRoutes:
    """Route labels for an ASGI app, read from the scope after the app has routed it."""

    def __init__(
        self, app: Any, labels: RouteLabels, resolver: RouteResolver | None = None
    ) -> None:
        self.labels = labels
        self._resolver = resolver
        self._root = _find_routed_app(app)
        #: True until a routed app (one with ``routes``) is known.
        self.needs_app = self._root is None
        self._prefixes: dict[str, str] = {}
        self._param_mounts: list[tuple[re.Pattern[str], str]] | None = None
        self._endpoints: dict[int, tuple[Any, str]] | None = None
        self._endpoint_misses = 0
        #: (id(route object), root_path, the guard's root_path, id(FastAPI's route context or
        #: None)) -> (the route, the context, its label): a route's label is worked out once
        #: (bounded; the route and context are kept, so no other object can take their ids).
        self._by_route: dict[tuple[int, Any, str, int], tuple[Any, Any, str]] = {}

    def note_app(self, scope: Mapping[str, Any]) -> None:
        """Remember the outermost routed app (``add_middleware`` sees it in the scope)."""
        self._root = _find_routed_app(scope.get("app"))
        self.needs_app = False  # look once: a later miss is an app without routes

    def resolve(self, scope: Mapping[str, Any], entry_root: str) -> str:
        """The route label of a request the app has handled."""
        if self._resolver is not None:
            template = self._resolver(scope)
            return self.labels.admit(template) if template else self.labels.unmatched
        route = scope.get("route")
        if route is None:
            # Routers that do not set ``scope["route"]`` (FastAPI's own router for plain
            # Starlette routes and mounts) still set ``scope["endpoint"]``.
            endpoint = scope.get("endpoint")
            template = None if endpoint is None else self._endpoint_template(endpoint)
            return self.labels.admit(template) if template else self.labels.unmatched
        root = scope.get("root_path", "")
        fastapi = scope.get("fastapi")
        # FastAPI >= 0.16x keeps the included router's full path in its own part of the scope,
        # on a context object made once per inclusion.
        context = fastapi.get("effective_route_context") if type(fastapi) is dict else None
        key = (id(route), root, entry_root, id(context))
        known = self._by_route.get(key)
        if known is not None:
            return known[2]
        template = None if context is None else getattr(context, "path_format", None)
        if not template:
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            if not isinstance(template, str):
                return self.labels.unmatched
            if template.endswith("/{path}") and hasattr(route, "routes"):
                # The leaf is a mount of a plain ASGI app (static files): ``root_path`` already
                # holds the mount's own prefix.
                template = "/{path}"
        if root != entry_root:
            template = self._mount_prefix(root[len(entry_root) :]) + template
        label = self.labels.admit(template)
        if len(self._by_route) >= _MAX_KNOWN_ROUTES:  # many mount prefixes: start again
            self._by_route.clear()
        self._by_route[key] = (route, context, label)
        return label

    def _endpoint_template(self, endpoint: Any) -> str | None:
        """The full template of the route whose endpoint (or mounted app) is ``endpoint``."""
        if self._endpoints is None or id(endpoint) not in self._endpoints:
            if self._endpoints is not None and self._endpoint_misses > 8:
                return None  # not a route of this app; stop walking it again
            self._endpoint_misses += self._endpoints is not None
            table: dict[int, tuple[Any, str]] = {}
            _walk_endpoints(self._root, "", table, 0)
            self._endpoints = table
        found = self._endpoints.get(id(endpoint))
        return found[1] if found is not None and found[0] is endpoint else None

    def _mount_prefix(self, concrete: str) -> str:
        """The template of a concrete mount prefix (``/orgs/acme`` -> ``/orgs/{org}``)."""
        known = self._prefixes.get(concrete)
        if known is not None:
            return known
        if self._param_mounts is None:
            self._param_mounts = []
            for template in _mount_templates(self._root):
                if "{" in template:
                    self._param_mounts.append((_template_regex(template), template))
                else:
                    self._prefixes.setdefault(template, template)
            known = self._prefixes.get(concrete)
            if known is not None:
                return known
        for regex, template in self._param_mounts:
            if regex.fullmatch(concrete):
                return _STARLETTE_PARAM.sub(r"{\1}", template)
        # A mount the walk did not see (added later, or no routed app found): keep the prefix
        # while there are few of them, so a parameterised mount cannot explode the labels.
        if len(self._prefixes) < 64:
            self._prefixes[concrete] = concrete
            return concrete
        return "/{mount}"


def _find_routed_app(app: Any) -> Any:
    """Follow ``.app`` links from a wrapped app down to one with ``routes``."""
    for _ in range(32):
        if app is None:
            return None
        if isinstance(getattr(app, "routes", None), list):
            return app
        app = getattr(app, "app", None)
    return None


def _mount_templates(app: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """Every mount prefix template below ``app`` (Starlette ``Mount`` duck-typed)."""
    found: list[str] = []
    if app is None or depth > 16:
        return found
    try:
        routes = list(getattr(app, "routes", None) or ())
    except Exception:
        return found
    for route in routes:
        path = getattr(route, "path", None)
        path_format = getattr(route, "path_format", None)
        if (
            isinstance(path, str)
            and isinstance(path_format, str)
            and path_format.endswith("/{path}")
            and hasattr(route, "routes")
        ):
            here = prefix + path.rstrip("/")
            found.append(here)
            found.extend(_mount_templates(route, here, depth + 1))
    return found


def _walk_endpoints(app: Any, prefix: str, table: dict[int, tuple[Any, str]], depth: int) -> None:
    """Map ``id(endpoint)`` to (endpoint, full template) for every route below ``app``."""
    if app is None or depth > 16:
        return
    try:
        routes = list(getattr(app, "routes", None) or ())
    except Exception:
        return
    for route in routes:
        path_format = getattr(route, "path_format", None)
        if not isinstance(path_format, str):
            continue
        if path_format.endswith("/{path}") and hasattr(route, "routes"):
            here = prefix + path_format[: -len("/{path}")]
            target = getattr(route, "app", None)
            if target is not None:
                table.setdefault(id(target), (target, here + "/{path}"))
            _walk_endpoints(route, here, table, depth + 1)
            continue
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None:
            table.setdefault(id(endpoint), (endpoint, prefix + path_format))


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    last = 0
    for match in _STARLETTE_PARAM.finditer(template):
        pattern += re.escape(template[last : match.start()])
        pattern += ".*" if match.group(0).endswith(":path}") else "[^/]+"
        last = match.end()
    pattern += re.escape(template[last:])
    return re.compile(pattern)
