"""A clear error for a missing optional dependency."""

from __future__ import annotations


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed: install it with `pip install launchguard[{extra}]`",
            name=package,
        )
        self.extra = extra
