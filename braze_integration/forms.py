"""Admin forms: the Connect screen and the Sync fields rows.

The API key is write-only: the password input never renders a value back, and an empty input
keeps the stored key. Validation stays on the models (``Connection.clean``, ``FieldMapping.clean``);
the forms only turn the screen's inputs into model fields.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from .endpoints import Instance
from .fields import field_choices, loyalty_fields
from .models import Connection, FieldMapping, RemoteKind, api_key_problem

CUSTOM_URL = "custom"


def _api_key_valid(key: str) -> None:
    if problem := api_key_problem(key):
        raise ValidationError(f"The REST API key {problem}; paste it again.")


def instance_choices() -> list[tuple[str, str]]:
    return [(value, f"{label} — {value}") for value, label in Instance.choices] + [(CUSTOM_URL, "Custom URL")]


class ConnectionForm(forms.ModelForm):
    """Antavo's Connect screen: where Braze is, the key, and how fast and how much to send."""

    instance = forms.ChoiceField(
        label="Instance",
        choices=instance_choices,
        initial=Instance.EU_01.value,
        help_text="Your Braze instance, as shown in Braze's dashboard (Settings › APIs and identifiers).",
    )
    new_api_key = forms.CharField(
        label="REST API key",
        required=False,
        strip=True,
        validators=[_api_key_valid],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "size": 50}),
    )

    class Meta:
        model = Connection
        fields = [
            "name",
            "instance_url",
            "app_id",
            "active",
            "send_mode",
            "batch_size",
            "per_array_limit",
            "rate_limit_requests",
            "rate_limit_seconds",
            "max_attempts",
        ]
        labels = {"instance_url": "Custom URL"}
        help_texts = {
            "instance_url": "Only for a Custom URL: the REST endpoint, e.g. https://rest.fra-01.braze.eu"
        }
        widgets = {
            "instance_url": forms.TextInput(attrs={"size": 50, "placeholder": "https://rest.….braze.com"})
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "instance_url" in self.fields:  # absent when the admin shows the page read-only
            self.fields["instance_url"].required = False
        current = self.instance.instance_url
        if current:
            self.initial["instance"] = current if current in Instance.values else CUSTOM_URL
            if current in Instance.values:
                self.initial["instance_url"] = ""
        key = self.fields["new_api_key"]
        if self.instance.api_key:
            key.help_text = (
                f"Current key: {self.instance.api_key_display}. Leave empty to keep the current key. "
                "A REST API key with the users.track permission; stored encrypted."
            )
        else:
            key.help_text = (
                "A REST API key with the users.track permission; stored encrypted, never shown again."
            )

    def clean(self):
        cleaned = super().clean()
        choice = cleaned.get("instance")
        if choice and choice != CUSTOM_URL:
            # The model's clean() (run after this) normalizes and vets the URL either way.
            self.instance.instance_url = choice
            cleaned["instance_url"] = choice
        elif choice == CUSTOM_URL and not (cleaned.get("instance_url") or "").strip():
            self.add_error("instance_url", "Enter the custom URL, or pick your instance from the list.")
        if not cleaned.get("new_api_key") and not self.instance.api_key and "new_api_key" not in self.errors:
            self.add_error("new_api_key", "Enter the REST API key.")
        return cleaned

    def _post_clean(self):
        super()._post_clean()
        # ``Connection.clean`` reports URL problems on instance_url; with a listed instance chosen the
        # text box is hidden, so show the message on the dropdown too.
        if "instance_url" in self.errors and self.cleaned_data.get("instance") not in (None, CUSTOM_URL):
            for message in self.errors["instance_url"]:
                self.add_error("instance", message)

    def save(self, commit=True):
        key = self.cleaned_data.get("new_api_key")
        if key:
            self.instance.set_api_key(key)
        return super().save(commit=commit)


class _RemoteKindField(forms.TypedChoiceField):
    """A row posted without a kind (an older page, a script) is an attribute, as before kinds existed,
    and is not changed by that."""

    def has_changed(self, initial, data) -> bool:
        return super().has_changed(initial, data or RemoteKind.ATTRIBUTE)


class FieldMappingForm(forms.ModelForm):
    """One Sync fields row: a loyalty field (grouped dropdown with its Braze type) and a Braze attribute,
    or a consent field and a subscription group's id."""

    loyalty_field = forms.ChoiceField(label="Loyalty field", choices=())
    remote_kind = _RemoteKindField(label="Kind", choices=RemoteKind.choices, required=False,
                                   empty_value=RemoteKind.ATTRIBUTE, initial=RemoteKind.ATTRIBUTE)

    class Meta:
        model = FieldMapping
        fields = ["loyalty_field", "remote_kind", "remote_field"]
        labels = {"remote_field": "Remote field (Braze attribute)"}
        widgets = {"remote_field": forms.TextInput(attrs={"size": 30, "placeholder": "e.g. loyalty_points"})}

    # Set by the connection page's inline: the mappable fields, read once for every row of the page.
    known_fields: dict | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        known = self.known_fields if self.known_fields is not None else loyalty_fields()
        choices: list = [("", "— choose a field —"), *field_choices(known)]
        current = self.instance.loyalty_field if self.instance.pk else None
        if current and current not in known:
            # A custom field that was deleted since: keep the row visible so it can be removed.
            choices.append((current, f"{current} (no longer defined)"))
        self.fields["loyalty_field"].choices = choices
