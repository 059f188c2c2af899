from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and invitations"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects to the outbox's delivery signals
