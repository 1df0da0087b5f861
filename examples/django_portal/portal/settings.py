"""Settings for the Django client portal. Override with env vars; never ship the dev defaults."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-dev-only-do-not-deploy")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = ["examples.django_portal.billing"]

MIDDLEWARE = [
    "launchguard.integrations.django.LaunchGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
LAUNCHGUARD = {"service": "portal-django"}

ROOT_URLCONF = "examples.django_portal.portal.urls"
WSGI_APPLICATION = "examples.django_portal.portal.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PORTAL_DB", BASE_DIR / "db.sqlite3"),
    }
}
if os.environ.get("PORTAL_PG_DSN"):  # e.g. postgresql://postgres@127.0.0.1:5432/portal
    from urllib.parse import urlsplit

    _pg = urlsplit(os.environ["PORTAL_PG_DSN"])
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _pg.path.lstrip("/"),
        "USER": _pg.username or "",
        "PASSWORD": _pg.password or "",
        "HOST": _pg.hostname or "",
        "PORT": str(_pg.port or ""),
    }
if os.environ.get("PORTAL_REPLICA_DB"):  # a second alias, e.g. a read replica
    DATABASES["replica"] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["PORTAL_REPLICA_DB"],
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
