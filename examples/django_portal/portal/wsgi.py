"""WSGI entry point: `examples.django_portal.portal.wsgi:application` (or `portal.wsgi:application`
from examples/django_portal)."""

import os
import sys
from pathlib import Path

from django.core.wsgi import get_wsgi_application

# The repo root, so `examples.django_portal...` imports work from any working directory.
_repo_root = str(Path(__file__).resolve().parents[3])
if _repo_root not in sys.path:
    sys.path.insert(0, _repo_root)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_portal.portal.settings")

application = get_wsgi_application()
