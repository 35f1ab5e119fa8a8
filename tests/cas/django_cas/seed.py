"""Prepare the test CAS server's database: its tables, one student, and the service it serves.

Run as `python -m tests.cas.django_cas.seed STUDENT PASSWORD NAME SERVICE_PATTERN` with
DJANGO_SETTINGS_MODULE and WECOM_BIND_TEST_CAS_DB set.
"""

from __future__ import annotations

import sys

import django
from django.core.management import call_command


def main(student: str, password: str, name: str, service_pattern: str) -> None:
    """Migrate, create the student and register the service with single logout on."""
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from cas_server.models import ReplaceAttributName, ServicePattern
    from django.contrib.auth.models import User

    User.objects.create_user(username=student, password=password, first_name=name)
    service = ServicePattern.objects.create(
        pos=1, name="wecom-bind", pattern=service_pattern, single_log_out=True
    )
    # Only the name is released, under the attribute name the service reads (cas_name_attribute).
    ReplaceAttributName.objects.create(name="first_name", replace="name", service_pattern=service)


if __name__ == "__main__":
    main(*sys.argv[1:5])
