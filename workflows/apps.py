from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from braze_integration.attribute_claims import attribute_claimant_register
        from braze_integration.monitoring import backlog_register

        from . import receivers  # noqa: F401  (connects the signal receivers)
        from .models import sync_data_attribute_claims
        from .services import trigger_records_waiting

        attribute_claimant_register(sync_data_attribute_claims)
        backlog_register("Workflow triggers", trigger_records_waiting)
