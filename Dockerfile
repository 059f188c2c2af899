# One image for the web server (gunicorn) and the dispatcher (`manage.py dispatch_outbox`).
#   docker build -t medparser-invitations .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    WEB_CONCURRENCY=3

WORKDIR /app

# psycopg2-binary and the other pins ship wheels: no compiler in the image.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are collected at build time and served by WhiteNoise; this needs no secret or database.
RUN DJANGO_SETTINGS_MODULE=config.settings.development python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin app

# The code stays owned by root: the app user can run it, not change it.
USER app
EXPOSE 8000

# gunicorn reads WEB_CONCURRENCY for its worker count. No access log on purpose: request paths
# hold invitation tokens (/invitations/accept/<token>/); Django's own loggers redact them.
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--timeout", "30", "--graceful-timeout", "30"]
