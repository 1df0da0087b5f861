#!/usr/bin/env python
"""Django's command-line utility for the portal; works from the repo root or this directory."""

import os
import sys
from pathlib import Path


def main() -> None:
    # The repo root, so `examples.django_portal...` imports work from any working directory.
    repo_root = str(Path(__file__).resolve().parents[2])
    if repo_root not in sys.path:
        sys.path.insert(0, repo_root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_portal.portal.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
