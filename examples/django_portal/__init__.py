"""The client portal on Django (SQLite), guarded by launchguard."""
