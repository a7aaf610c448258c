from django.apps import AppConfig


class BrazeIntegrationConfig(AppConfig):
    name = "braze_integration"
    verbose_name = "Braze"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from loyaltysync.member_checks import member_check_register

        from . import receivers  # noqa: F401  (connects the signal receivers)
        from .endpoints import local_endpoints_check
        from .queue import claim_lease_check
        from .sendable import CHECK_KEY, member_sendable_problems

        checks.register(local_endpoints_check)
        checks.register(claim_lease_check)
        member_check_register(CHECK_KEY, member_sendable_problems)
