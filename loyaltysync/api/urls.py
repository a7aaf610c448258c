"""REST API routes, mounted at ``/api/v1/`` by ``loyaltysync.urls``."""

from django.urls import path, re_path, register_converter

from . import views


class MemberIdConverter:
    """Any characters ("/" and newlines too), so that every id, even one that cannot exist, gets the API's
    JSON answer rather than Django's HTML 404."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MemberIdConverter, "member_id")

app_name = "loyalty-api"

urlpatterns = [
    path("members/", views.MemberListCreateView.as_view(), name="member-list"),
    # A member id may contain "/": the events and ledger routes are tried first.
    path("members/<member_id:member_id>/events/", views.MemberEventsView.as_view(), name="member-events"),
    path("members/<member_id:member_id>/ledger", views.MemberLedgerView.as_view(), name="member-ledger"),
    path("members/<member_id:member_id>/", views.MemberDetailView.as_view(), name="member-detail"),
    # Antavo's clients post to /events without a trailing slash; the slash variants are accepted too
    # (and left out of the schema, so each operation is documented once).
    path("events/bulk", views.EventBulkView.as_view(), name="events-bulk"),
    path("events", views.EventCreateView.as_view(), name="events"),
    re_path(r"^events/bulk/$", views.EventBulkView.as_view(schema=None)),
    re_path(r"^events/$", views.EventCreateView.as_view(schema=None)),
]
