"""The client portal on FastAPI + SQLAlchemy 2.x, guarded by launchguard."""
