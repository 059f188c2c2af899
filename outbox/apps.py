from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbound email"

    def ready(self) -> None:
        from .checks import register_checks

        register_checks()
