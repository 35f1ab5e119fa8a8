"""The test CAS server's URLs: django-cas-server under /cas/."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("cas/", include("cas_server.urls", namespace="cas_server"))]
