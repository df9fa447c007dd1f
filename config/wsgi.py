import os

from django.core.wsgi import get_wsgi_application

# Unset means production, which refuses to start without its variables: a deployment that
# forgets DJANGO_SETTINGS_MODULE fails closed instead of running with development defaults
# (DEBUG on). manage.py (and so scripts/dev) and scripts/test choose their settings themselves.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()
