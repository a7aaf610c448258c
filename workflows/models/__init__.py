"""Workflows' models: the definitions (``definition``) and what running them leaves behind (``runs``)."""

from .choices import DATE_KINDS, Frequency, Logic, Operator, TriggerKind, Weekday  # noqa: F401
from .definition import (  # noqa: F401
    ACTION_NAME,
    ENGINE_ACTIONS,
    USAGE_FOR_ACTION,
    Action,
    ActionKind,
    ActionValue,
    Condition,
    Trigger,
    Workflow,
    WorkflowPart,
    _bump_version,
    _parent,
    action_description,
    custom_field_types,
    mapped_attribute_problems,
    step_tree,
    sync_data_attribute_claims,
    workflow_schema,
)
from .runs import (  # noqa: F401
    DateTriggerScan,
    DueRun,
    RunOutcome,
    TriggerRecord,
    TriggerStatus,
    WorkflowRun,
)
