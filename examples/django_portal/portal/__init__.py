"""Django project package: settings, URLs, WSGI and ASGI entry points."""
