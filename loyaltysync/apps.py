from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def cache_table_create(*, using: str, **kwargs) -> None:
    """Every migrate leaves the database cache's table in place (a no-op when the cache is Redis)."""
    call_command("createcachetable", database=using, verbosity=0)


class LoyaltyConfig(AppConfig):
    name = "loyaltysync"
    verbose_name = "Loyalty program"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django_q.signals import post_spawn

        from . import checkpoints, collector

        post_migrate.connect(cache_table_create, sender=self)
        connection_created.connect(checkpoints.apply, dispatch_uid="loyaltysync_sqlite_checkpoints")
        post_spawn.connect(checkpoints.worker_started, dispatch_uid="loyaltysync_sqlite_checkpoints_worker")
        post_spawn.connect(collector.freeze_startup, dispatch_uid="loyaltysync_collector_freeze")
