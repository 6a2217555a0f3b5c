"""REST URLs (under /api/)."""
from django.urls import path

urlpatterns: list = []
