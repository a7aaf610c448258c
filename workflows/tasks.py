"""django-q2 tasks: thin wrappers that call one service each."""

from . import services


def process_triggers() -> str:
    """After a commit that recorded triggers, and every minute for whatever a lost task left."""
    report = services.trigger_records_process()
    return (f"records {report.records}, runs {report.runs}: sent {report.sent}, filtered out "
            f"{report.filtered_out}, errors {report.errors}, failed records {report.failed_records}")


def date_triggers_scan() -> int:
    """Every minute while date workflows exist: record the members due date and anniversary workflows match."""
    return services.date_triggers_scan()


def runs_prune() -> int:
    """Daily: drop run logs and finished trigger records past WORKFLOW_RUN_RETENTION_DAYS."""
    return services.workflow_runs_prune()


def due_runs_resume() -> int:
    """Every minute: take on the workflow runs whose wait is over (or whose worker died)."""
    from . import runner

    return runner.due_runs_resume()
