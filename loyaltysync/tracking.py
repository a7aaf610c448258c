"""What a model instance changed since it was loaded, and saves that write only that.

``TrackedFieldsMixin`` keeps a snapshot of the values a row was loaded with (renewed after every save
that commits), so ``post_save`` listeners can ask ``changed_fields()``, and a plain ``save()`` writes the
changed fields only: an object held while the row changed elsewhere does not put its old values back.
``Member`` uses it; the Braze sync and the workflows' field-change triggers read what it reports.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from .fieldtypes import json_same


class TrackedFieldsMixin(models.Model):
    """Remembers the values a row was loaded with, so listeners can ask what a save changed, and so a
    save writes only what changed.

    The snapshot is taken in ``from_db`` and renewed after ``save()`` (after every ``post_save``
    receiver has run), so ``changed_fields()`` inside a receiver compares against the stored row. It
    holds copies of JSON values, so a dict changed in place is a change too, and compares JSON values
    as JSON (``true`` is not ``1``).

    ``save()`` of a loaded object without ``update_fields`` writes the changed fields (and ``auto_now``
    ones), not every field: an object held while the row changed elsewhere (a long-running script, say)
    must not put its old values back. Those would be changes nobody recorded, and Braze would keep the
    newer values. A row deleted meanwhile (an erased member) is not inserted again: Django raises
    ``DatabaseError``, as for any save with ``update_fields`` that finds no row.

    When the transaction of an earlier save was rolled back (a caller's, or a savepoint around it),
    the next ``save()`` of the same object reads the stored row again first: its values never
    reached the database, and a retry with the same object must still see them as changes
    (``_snapshot_reread_if_rolled_back``).
    """

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_values = _snapshot(zip(field_names, values, strict=True))
        return instance

    def save(self, *args, **kwargs):
        using = kwargs.get("using")
        self._snapshot_reread_if_rolled_back()
        before, creating = self.loaded_values, self._state.adding
        if not args and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            # Django fills a foreign key from a related object saved after it was assigned; it does so in
            # save(), which is too late to see it changed. Done first (save() does it again, idempotently).
            self._prepare_related_fields_for_save(operation_name="save")
            kwargs["update_fields"] = self._fields_to_write()
        update_fields = kwargs.get("update_fields")
        # One transaction around the row and whatever post_save receivers record about it, so a
        # change is never stored without the listeners' bookkeeping (or the other way round).
        with transaction.atomic(using=using):
            self._json_objects_merge(update_fields, using)
            super().save(*args, **kwargs)
        fields = self._meta.concrete_fields
        if update_fields is not None and self.loaded_values is not None:  # the fields not written keep theirs
            written = set(update_fields)
            fields = [f for f in fields if f.name in written or f.attname in written]
            self._loaded_values = {**self.loaded_values, **_snapshot((f, getattr(self, f.attname)) for f in fields)}
        else:
            self._loaded_values = _snapshot((f, getattr(self, f.attname)) for f in fields)
        conn = transaction.get_connection(using)
        if conn.in_atomic_block:
            # Not committed yet: the caller's transaction (or a savepoint of it) may still roll this
            # save back. One callback per savepoint level is enough to tell. (A savepoint made by hand,
            # ``transaction.savepoint()``, is not seen: Django's on_commit does not see it either.)
            unconfirmed = getattr(self, "_unconfirmed", None) or []
            sids = tuple(conn.savepoint_ids)
            if unconfirmed and unconfirmed[-1].sids == sids and unconfirmed[-1].waiting():
                unconfirmed[-1].created |= creating
            else:
                confirm = _SaveCommitted(conn, sids, before=before, created=creating)
                self._unconfirmed = [*unconfirmed, confirm]
                transaction.on_commit(confirm, using=using)

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        """Reload, and take the reloaded values as loaded (a deferred field read on access too)."""
        self._snapshot_reread_if_rolled_back()
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if self.loaded_values is None:
            return
        deferred = self.get_deferred_fields()
        self._loaded_values = {**self.loaded_values, **_snapshot(
            (f, getattr(self, f.attname)) for f in self._meta.concrete_fields
            if f.attname not in deferred and (fields is None or f.attname in fields or f.name in fields))}

    def _json_objects_merge(self, update_fields, using) -> None:
        """A JSON object this save writes gets only the keys this object changed: the stored object,
        read under a row lock, with those keys set or removed. Another writer's keys stay (a script
        holding the member while the API changed another custom field, say). The stored object becomes
        the loaded one, so listeners see this save's keys changed, not the other writer's again.

        The lock is ``FOR NO KEY UPDATE``, the one the save's own ``UPDATE`` takes: it does not wait for
        a worker or a checkout inserting a row that refers to the member (``FOR KEY SHARE``)."""
        loaded = self.loaded_values
        if not loaded or update_fields is None:
            return
        names = [f.attname for f in self._meta.concrete_fields
                 if f.attname in loaded and (f.name in update_fields or f.attname in update_fields)
                 and isinstance(loaded[f.attname], dict) and isinstance(getattr(self, f.attname), dict)
                 and not json_same(loaded[f.attname], getattr(self, f.attname))]
        if not names:
            return
        stored = (type(self)._base_manager.using(using or self._state.db).select_for_update(no_key=True)
                  .filter(pk=self.pk).values(*names).first())
        merged_loaded = dict(loaded)
        for name in names:
            if stored is None or not isinstance(stored[name], dict):
                continue
            old, new, merged = loaded[name], getattr(self, name), dict(stored[name])
            for key in old.keys() | new.keys():
                if key not in new:
                    merged.pop(key, None)
                elif key not in old or not json_same(old[key], new[key]):
                    merged[key] = new[key]
            setattr(self, name, merged)
            merged_loaded[name] = copy.deepcopy(stored[name])
        self._loaded_values = merged_loaded

    def _fields_to_write(self) -> list[str] | None:
        """The fields a plain ``save()`` writes: all of them for a new object (``None``), else the
        changed ones and the ``auto_now`` ones (so a save with no change still touches the row, fires
        the signals and finds a row deleted meanwhile). A field loaded deferred and set since is a
        changed one (``changed_fields``); one still deferred is not written, as Django would not."""
        changed = None if self._state.adding or self.pk is None else self.changed_fields()
        if changed is None:
            return None
        return [field.name for field in self._meta.concrete_fields
                if not field.primary_key and (field.attname in changed or getattr(field, "auto_now", False))]

    def __getstate__(self):
        """For pickles and copies. The confirmation callbacks hold the database connection and stay
        behind; a copy taken while saves of this object may still roll back takes the snapshot from
        before them, so it counts their values as changes (written again, harmlessly if they held)."""
        state = super().__getstate__()
        unconfirmed = [confirm for confirm in state.pop("_unconfirmed", None) or [] if not confirm.committed]
        if unconfirmed:
            state["_loaded_values"] = unconfirmed[0].before
        if state.get("_loaded_values") is not None:
            state["_loaded_values"] = dict(state["_loaded_values"])  # a copy's own
        return state

    def _snapshot_reread_if_rolled_back(self) -> None:
        """After a rollback of earlier saves, take the stored row as loaded for the fields this object
        changed since its last save that held (those must be written again, and synced), and the
        object's own values for the others (another writer may have changed them meanwhile: they are
        not this object's to write). A row gone meanwhile stays gone: the next save raises, unless the
        rolled-back saves inserted it (a retried creation inserts it again)."""
        unconfirmed = getattr(self, "_unconfirmed", None)
        if not unconfirmed:
            return
        lost = next((i for i, confirm in enumerate(unconfirmed) if not (confirm.committed or confirm.waiting())), None)
        if lost is None:
            self._unconfirmed = [confirm for confirm in unconfirmed if not confirm.committed]
            return
        # Saves are registered in order, and a save first comes here: those after the first lost one
        # were made inside its rolled-back transaction or savepoint, and are lost with it.
        baseline, created = unconfirmed[lost].before, any(confirm.created for confirm in unconfirmed[lost:])
        self._unconfirmed = [confirm for confirm in unconfirmed[:lost] if not confirm.committed]
        names = [f.attname for f in self._meta.concrete_fields]
        stored = type(self)._base_manager.using(self._state.db).filter(pk=self.pk).values(*names).first()
        if stored is None:
            # Never committed (a full save inserts it), or deleted by someone else (nothing counts as loaded,
            # so the save writes every field with update_fields, finds no row and raises).
            self._loaded_values = None if created or baseline is None else {}
            return
        loaded = {name: copy.deepcopy(value) for name, value in stored.items()}
        if baseline is not None:
            for name in names:
                mine = getattr(self, name)
                if name not in baseline:
                    continue
                if _same(baseline[name], mine):
                    loaded[name] = copy.deepcopy(mine)  # not this object's change
                elif isinstance(baseline[name], dict) and isinstance(mine, dict):
                    loaded[name] = copy.deepcopy(baseline[name])  # the save merges its own keys into the stored object
        self._loaded_values = loaded

    @property
    def loaded_values(self) -> dict[str, Any] | None:
        """The values as last read from or written to the database; ``None`` for a new object."""
        return getattr(self, "_loaded_values", None)

    def changed_fields(self, among: Iterable[str] | None = None) -> set[str] | None:
        """Attribute names whose value differs from the loaded row; ``None`` when unknown (new object).
        A field the object was loaded without (``only()``, ``defer()``) and set since counts as changed.

        JSON values are compared as JSON (``true`` is not ``1``); a dict's changed keys are reported as
        ``"<field>.<key>"`` too.

        ``among``: only these fields (names or attribute names), e.g. the ``update_fields`` a ``post_save``
        receiver is given: what that save wrote.
        """
        loaded = self.loaded_values
        if loaded is None:
            return None
        changed: set[str] = set()
        values = self.__dict__  # a field's value, or no entry while it is deferred (getattr would load it)
        fields = self._meta.concrete_fields if among is None else {self._meta.get_field(name) for name in among}
        for field in fields:
            name = field.attname
            if name not in loaded:
                if name in values:  # loaded deferred, then set: what it was is unknown
                    changed.add(name)
                continue
            old, new = loaded[name], values[name] if name in values else getattr(self, name)
            if old == new and type(old) is type(new) and type(old) not in _JSON_CONTAINERS:
                continue  # the common case, first
            if isinstance(old, dict | list) or isinstance(new, dict | list):
                if json_same(old, new):
                    continue
                changed.add(name)
                old_d, new_d = old or {}, new or {}
                if isinstance(old_d, dict) and isinstance(new_d, dict):
                    changed.update(f"{name}.{key}" for key in old_d.keys() | new_d.keys()
                                   if key not in old_d or key not in new_d or not json_same(old_d[key], new_d[key]))
            elif old != new and not _same_as_stored(field, old, new):
                changed.add(name)
        return changed

    def previous_value(self, name: str) -> Any:
        loaded = self.loaded_values or {}
        return loaded.get(name)


_JSON_CONTAINERS = (dict, list)


def _same(a: Any, b: Any) -> bool:
    return json_same(a, b) if isinstance(a, dict | list) or isinstance(b, dict | list) else a == b


def _snapshot(items) -> dict[str, Any]:
    """Field values as loaded or saved, from ``(field, value)`` pairs (a field or its attname): JSON values
    copied, so that a change made in place shows; a saved value as the field stores it (the text
    "1990-05-17" set on a date field was stored as that date)."""
    out = {}
    for field, value in items:
        if isinstance(value, dict | list):
            value = copy.deepcopy(value)
        elif not isinstance(field, str) and value is not None:
            value = _stored_form(field, value)
        out[field if isinstance(field, str) else field.attname] = value
    return out


def _stored_form(field: models.Field, value: Any) -> Any:
    if isinstance(field, models.JSONField):
        return value
    try:
        return field.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return value


def _same_as_stored(field: models.Field, old: Any, new: Any) -> bool:
    """Whether ``new`` is the stored ``old`` in another type (a date given as text, a Decimal as "10.00")."""
    return new is not None and type(new) is not type(old) and _stored_form(field, new) == old


class _SaveCommitted:
    """Called when the transaction of a tracked save commits; still waiting while that transaction
    (and the savepoint the callback was registered in) is open; neither: it was rolled back."""

    def __init__(self, conn, sids: tuple[str, ...], *, before: dict[str, Any] | None, created: bool):
        self.conn, self.sids = conn, sids
        self.before = before  # the object's snapshot before its first save in this transaction or savepoint
        self.created = created  # one of those saves inserted the row
        self.committed = False

    def __call__(self) -> None:
        self.committed = True

    def waiting(self) -> bool:
        return any(func is self for _, func, _ in reversed(self.conn.run_on_commit))
