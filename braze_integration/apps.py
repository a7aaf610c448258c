from django.apps import AppConfig


class BrazeIntegrationConfig(AppConfig):
    name = "braze_integration"
    verbose_name = "Braze"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from . import receivers  # noqa: F401  (connects the signal receivers)
        from .endpoints import local_endpoints_check

        checks.register(local_endpoints_check)
