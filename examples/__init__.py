"""Runnable example apps: one client portal in FastAPI, Flask and Django."""
