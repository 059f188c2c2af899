"""Fixtures shared by every app's tests."""

import os
import shutil
from collections.abc import Iterator

import pytest
from django.db import connection

from outbox.testing import SMTPTestServer

IN_CI = bool(os.environ.get("CI"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip PostgreSQL-only tests without PostgreSQL and browser tests without Chromium, visibly; in CI, fail."""
    from django.conf import settings

    if not shutil.which("chromium"):
        reason = "needs Chromium for the browser tests: apt-get install chromium (never `playwright install`)"
        for item in items:
            if item.get_closest_marker("browser"):
                if IN_CI:
                    raise pytest.UsageError(f"CI=true but no chromium on PATH; {reason}")
                item.add_marker(pytest.mark.skip(reason=reason))

    engine = settings.DATABASES["default"]["ENGINE"]
    if engine == "django.db.backends.postgresql":
        return
    reason = "needs PostgreSQL: set DATABASE_URL=postgres://... (see README)"
    for item in items:
        if item.get_closest_marker("postgresql"):
            if IN_CI:
                raise pytest.UsageError(f"CI=true but the database is not PostgreSQL; {reason}")
            item.add_marker(pytest.mark.skip(reason=reason))


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: every test must run on PostgreSQL with Chromium there."""
    if IN_CI and _skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nCI=true: {len(_skipped)} test(s) skipped, which CI does not allow: {', '.join(_skipped[:10])}")


@pytest.fixture
def provider_role(db):
    from accounts.models import Role

    # get_or_create: a transactional test's flush empties the table the data migration seeded.
    return Role.objects.get_or_create(name="Provider")[0]


@pytest.fixture
def admin_user(db):
    from accounts.models import User

    return User.objects.create_superuser("admin@example.com", "correct-horse-battery-staple")


@pytest.fixture
def smtp_server(settings) -> Iterator[SMTPTestServer]:
    """A real SMTP server on a loopback port, and settings that send to it."""
    with SMTPTestServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = server.host
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_TIMEOUT = 2
        yield server


@pytest.fixture
def is_postgresql() -> bool:
    return connection.vendor == "postgresql"
