from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and invitations"

    def ready(self) -> None:
        from . import log_filters, receivers  # noqa: F401 - receivers connect to the outbox's delivery signals

        log_filters.install()
