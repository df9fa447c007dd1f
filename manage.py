#!/usr/bin/env python
import os
import sys


def main() -> None:
    # The developer's tool (scripts/dev runs it): development settings unless told otherwise.
    # Production sets DJANGO_SETTINGS_MODULE; its servers and workers (config/asgi.py, wsgi.py,
    # celery.py) default to production settings instead.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
