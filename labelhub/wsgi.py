"""WSGI entry point (gunicorn labelhub.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")
application = get_wsgi_application()
