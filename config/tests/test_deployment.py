"""The deployment files: the Compose stack, the image, .env.example and the provider blocks of the docs.

No Docker engine runs here, so the Compose file is read as data; the settings blocks are run
through the real settings modules and `check --deploy` in a subprocess.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SEED_EMAIL_VARIABLES = (
    "EMAIL_BACKEND",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_TIMEOUT",
    "DEFAULT_FROM_EMAIL",
    "BASE_URL",
)
_ASSIGNMENT = re.compile(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_example() -> tuple[dict[str, str], set[str]]:
    """The active assignments of .env.example, and every name it lists (commented out or not)."""
    active: dict[str, str] = {}
    listed: set[str] = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            listed.add(match[2])
            if not match[1]:
                active[match[2]] = match[3]
    return active, listed


def command_text(service: dict) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else command


def test_compose__has_db_web_dispatcher_and_a_dev_only_mailpit(compose):
    services = compose["services"]

    assert set(services) == {"db", "web", "dispatcher", "mailpit"}
    assert services["mailpit"]["profiles"] == ["dev"]
    assert all("profiles" not in services[name] for name in ("db", "web", "dispatcher"))


def test_compose__db_has_a_health_check_and_a_volume(compose):
    db = compose["services"]["db"]

    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    [volume] = db["volumes"]
    assert volume.split(":")[0] in compose["volumes"]
    assert volume.endswith(":/var/lib/postgresql/data")


def test_compose__web_migrates_then_runs_gunicorn_once_the_database_is_healthy(compose):
    web = compose["services"]["web"]
    command = command_text(web)

    assert command.index("manage.py migrate") < command.index("gunicorn config.wsgi")
    assert "&& exec gunicorn" in command
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert "--access-logfile" not in command  # request paths hold invitation tokens


def test_compose__dispatcher_uses_the_same_image_restarts_always_and_can_scale(compose):
    web, dispatcher = compose["services"]["web"], compose["services"]["dispatcher"]

    assert dispatcher["image"] == web["image"] and dispatcher["build"] == web["build"]
    assert "exec python manage.py dispatch_outbox" in command_text(dispatcher)
    assert "migrate --check" in command_text(dispatcher)  # waits for web's migrations, never runs them
    assert dispatcher["restart"] == "always"
    # Anything that names or binds a single instance would break `--scale dispatcher=N`.
    assert not {"container_name", "ports", "hostname"} & set(dispatcher)
    assert dispatcher["depends_on"]["db"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", ["web", "dispatcher"])
def test_compose__seed_email_variables_reach_web_and_dispatcher(compose, service):
    environment = compose["services"][service]["environment"]

    for name in SEED_EMAIL_VARIABLES:
        assert re.fullmatch(rf"\$\{{{name}(:-[^}}]*)?\}}", environment[name]), (name, environment[name])


def strings_in(node) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings_in(key) + strings_in(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [node] if isinstance(node, str) else []


def test_compose__every_variable_it_passes_is_in_env_example():
    used = set()
    for value in strings_in(yaml.safe_load((ROOT / "docker-compose.yml").read_text())):
        used |= set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", value))
    active, _ = env_example()

    assert used, "the compose file passes variables"
    assert used <= set(active), f"missing from .env.example (active): {sorted(used - set(active))}"


def test_env_example__lists_every_variable_the_settings_read():
    read = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        read |= set(re.findall(r"""\benv(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", path.read_text()))
    _, listed = env_example()

    assert {"EMAIL_HOST", "OUTBOX_BATCH_SIZE", "LOG_FORMAT"} <= read
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"


def test_env_example__every_variable_has_a_comment_nearby():
    lines = (ROOT / ".env.example").read_text().splitlines()
    uncommented = []
    for index, line in enumerate(lines):
        match = _ASSIGNMENT.match(line)
        if not match or match[1]:
            continue
        # A comment line in the same paragraph, above the assignment.
        paragraph = []
        for previous in reversed(lines[:index]):
            if not previous.strip():
                break
            paragraph.append(previous)
        if not any(p.lstrip().startswith("#") and not _ASSIGNMENT.match(p) for p in paragraph):
            uncommented.append(match[2])

    assert uncommented == []


@pytest.mark.parametrize("host", ["email-smtp.us-east-1.amazonaws.com", "smtp.gmail.com", "smtp.sendgrid.net"])
def test_env_example__has_a_commented_block_per_provider(host):
    assert f"# EMAIL_HOST={host}" in (ROOT / ".env.example").read_text()


def test_dockerfile__slim_base_non_root_user_and_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if line and not line.startswith("#")]
    keywords = [i[0] for i in instructions if i[0].isupper()]

    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.MULTILINE)
    users = [i[1].strip() for i in instructions if i[0] == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    cmd = next(i[1] for i in instructions if i[0] == "CMD")
    assert '"gunicorn"' in cmd and "config.wsgi" in cmd
    assert "--access-logfile" not in dockerfile
    assert "collectstatic" in dockerfile


def test_dockerignore__keeps_secrets_and_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".env", ".git", ".venv", "db.sqlite3"} <= ignored


def run_checks(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "SECRET_KEY": "k" * 60,
        "ALLOWED_HOSTS": "app.yourclinic.org",
        "DATABASE_URL": "sqlite:////nonexistent/never-opened.sqlite3",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def dotenv_blocks() -> dict[str, dict[str, str]]:
    """The ```dotenv blocks of docs/email-provider.md, by the section they sit in."""
    text = (ROOT / "docs" / "email-provider.md").read_text()
    blocks = {}
    for section in text.split("\n## ")[1:]:
        title, _, body = section.partition("\n")
        for block in re.findall(r"^```dotenv\n(.*?)^```", body, re.MULTILINE | re.DOTALL):
            values = {}
            for line in block.splitlines():
                assignment = _ASSIGNMENT.match(line)
                if assignment and not assignment[1]:
                    values[assignment[2]] = assignment[3]
            blocks[title.strip()] = values
    return blocks


def test_docs__have_a_ready_env_block_for_each_provider():
    assert set(dotenv_blocks()) == {"Amazon SES", "Google Workspace", "SendGrid"}


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["Amazon SES", "Google Workspace", "SendGrid"])
def test_docs__each_provider_block_passes_check_deploy_in_production(provider):
    block = dotenv_blocks()[provider]

    result = run_checks({"DJANGO_SETTINGS_MODULE": "config.settings.production", **block}, "--deploy", "--tag", "email")

    assert result.returncode == 0, result.stderr
    assert "outbox." not in result.stdout + result.stderr


@pytest.mark.slow
def test_env_example__active_values_pass_the_checks_of_the_development_stack():
    active, _ = env_example()
    active.pop("DJANGO_SETTINGS_MODULE")

    result = run_checks({"DJANGO_SETTINGS_MODULE": "config.settings.development", **active})

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_env_example__development_values_are_refused_by_production_deploy_checks():
    """Switching only DJANGO_SETTINGS_MODULE to production is not enough: mailpit has no TLS."""
    active, _ = env_example()
    active["DEBUG"] = "false"

    result = run_checks({**active, "DJANGO_SETTINGS_MODULE": "config.settings.production"}, "--deploy")

    assert result.returncode == 1
    assert "outbox.E005" in result.stderr and "outbox.E009" in result.stderr
