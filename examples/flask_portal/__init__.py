"""The client portal on Flask + stdlib sqlite3, guarded by launchguard."""
