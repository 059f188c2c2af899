"""`GET /healthz`: is the database reachable, and is the outbox being drained?"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .monitoring import backlog

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Answer 200 with the backlog, or 503 when the database is down or the oldest due email is stale."""
    max_age = settings.OUTBOX_HEALTH_MAX_DUE_AGE_SECONDS
    try:
        status = backlog()
    except DatabaseError as exc:
        logger.warning("healthz: database unreachable (%s)", type(exc).__name__)
        return JsonResponse({"status": "unhealthy", "database": "unreachable"}, status=503)
    problems = []
    if status["oldest_due_age_seconds"] > max_age:
        problems.append(f"oldest due email waited {status['oldest_due_age_seconds']:.0f}s (limit {max_age}s)")
    body = {
        "status": "unhealthy" if problems else "ok",
        "database": "ok",
        **status,
        "max_due_age_seconds": max_age,
        "problems": problems,
    }
    return JsonResponse(body, status=503 if problems else 200)
