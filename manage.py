#!/usr/bin/env python
import os
import sys


def main() -> None:
    # The developer's tool (scripts/dev runs it): development settings unless told otherwise.
    # Production sets DJANGO_SETTINGS_MODULE; its servers and workers (config/asgi.py, wsgi.py,
    # celery.py, and `manage.py serve`, the web server) default to production settings instead.
    server = sys.argv[1:2] == ["serve"]
    default = "config.settings.production" if server else "config.settings.base"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", default)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
