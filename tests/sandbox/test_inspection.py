"""The `/sandbox/...` endpoints over real HTTP: profiles, stats, the request log and settings."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from braze_integration.sandbox import SandboxServer

from .sandbox_http import (
    KEY,
    NO_PERMISSION_KEY,
    TRACK_ONLY_KEY,
    delete,
    event,
    member,
    track,
    user,
)

# --- inspection endpoints ---------------------------------------------------------------------------


def test_given_id_with_slash_and_space_when_fetched_url_encoded_then_found(server: SandboxServer) -> None:
    track(server, {"attributes": [member("club/member 7ø", tier="gold")]})
    response = user(server, "club/member 7ø")
    assert response.status_code == 200
    assert response.json()["external_id"] == "club/member 7ø"
    assert set(response.json()) == {"external_id", "attributes", "events", "purchases"}


def test_given_unknown_id_when_fetched_then_404_not_found(server: SandboxServer) -> None:
    response = user(server, "nobody")
    assert response.status_code == 404
    assert response.json() == {"message": "not found"}


def test_given_profiles_when_listed_then_sorted_ids_and_count(server: SandboxServer) -> None:
    track(server, {"attributes": [member("b", x=1), member("a", x=1), member("c", x=1)]})
    listing = requests.get(f"{server.url}/sandbox/users", timeout=5).json()
    assert listing == {"count": 3, "external_ids": ["a", "b", "c"]}


def test_given_requests_when_stats_fetched_then_counts_by_status_and_array(server: SandboxServer) -> None:
    track(server, {"attributes": [member(first_name="Ada", country="NO")], "events": [event(), event()]})
    track(server, {"attributes": []})
    stats = requests.get(f"{server.url}/sandbox/stats", timeout=5).json()
    assert stats["requests"] == 2
    assert stats["requests_by_status"] == {"201": 1, "400": 1}
    assert stats["objects"] == {"attributes": 1, "events": 2, "purchases": 0}
    assert stats["data_points"] == 1  # country is free
    assert stats["events_stored"] == 2
    assert stats["users"] == 1
    assert stats["max_objects_in_request"] == 3


def test_given_requests_when_log_fetched_with_limit_then_newest_entries_without_bodies(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member(x=1)], "events": [event()]})
    track(server, {"attributes": []})
    response = requests.get(f"{server.url}/sandbox/requests", params={"limit": 1}, timeout=5).json()
    [entry] = response["requests"]
    assert entry["status"] == 400 and entry["attributes"] == 0
    everything = requests.get(f"{server.url}/sandbox/requests", timeout=5).json()["requests"]
    assert [(item["status"], item["attributes"], item["events"]) for item in everything] == [
        (201, 1, 1),
        (400, 0, 0),
    ]
    assert "body" not in entry and "at" in entry


def test_given_bad_limit_when_log_fetched_then_400(server: SandboxServer) -> None:
    assert requests.get(f"{server.url}/sandbox/requests?limit=-1", timeout=5).status_code == 400


def test_given_data_when_reset_posted_then_profiles_and_stats_empty_but_keys_kept(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member(x=1)]})
    assert requests.post(f"{server.url}/sandbox/reset", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/sandbox/users", timeout=5).json()["count"] == 0
    assert requests.get(f"{server.url}/sandbox/stats", timeout=5).json()["requests"] == 0
    assert track(server, {"attributes": [member(x=1)]}).status_code == 201


def test_given_profiles_when_overview_page_fetched_then_html_lists_escaped_ids_with_links(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member("<b>7</b>", tier="gold", points=3)], "events": [event("<b>7</b>")]})
    response = requests.get(f"{server.url}/sandbox/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "&lt;b&gt;7&lt;/b&gt;" in response.text and "<b>7</b>" not in response.text
    assert 'href="/sandbox/users/%3Cb%3E7%3C%2Fb%3E"' in response.text
    assert "<td>2</td><td>1</td>" in response.text  # two attributes, one event


# --- control endpoints ------------------------------------------------------------------------------


def test_given_fault_settings_posted_when_read_back_then_current_config_returned(
    server: SandboxServer,
) -> None:
    answer = requests.post(
        f"{server.url}/sandbox/faults",
        json={"error_rate": 0.2, "fail_next": 3, "rate_limit": "10/1s"},
        timeout=5,
    ).json()
    assert answer["error_rate"] == 0.2 and answer["fail_next"] == 3 and answer["rate_limit"] == "10/1s"
    assert requests.get(f"{server.url}/sandbox/faults", timeout=5).json() == answer
    assert server.rate_limit == (10, 1.0)
    requests.post(f"{server.url}/sandbox/faults", json={"rate_limit": None}, timeout=5)
    assert server.rate_limit is None
    assert server.faults.error_rate == 0.2  # unchanged by a partial update


@pytest.mark.parametrize(
    "settings",
    [{"error_rate": 2}, {"fail_next": -1}, {"bogus": 1}, {"rate_limit": "fast"}, {"error_rate": "x"}],
)
def test_given_invalid_fault_settings_when_posted_then_400_and_nothing_changed(
    server: SandboxServer, settings: dict[str, Any]
) -> None:
    before = requests.get(f"{server.url}/sandbox/faults", timeout=5).json()
    response = requests.post(f"{server.url}/sandbox/faults", json=settings, timeout=5)
    assert response.status_code == 400
    assert requests.get(f"{server.url}/sandbox/faults", timeout=5).json() == before


def test_given_fail_next_set_over_http_when_posting_then_503(server: SandboxServer) -> None:
    requests.post(f"{server.url}/sandbox/faults", json={"fail_next": 1}, timeout=5).raise_for_status()
    assert track(server, {"attributes": [member(x=1)]}).status_code == 503


def test_given_bad_credentials_when_keys_fixed_at_run_time_then_requests_accepted(
    server: SandboxServer,
) -> None:
    new_key = {"Authorization": "Bearer rotated"}
    assert track(server, {"attributes": [member(x=1)]}, headers=new_key).status_code == 401
    answer = requests.post(f"{server.url}/sandbox/keys", json={"api_keys": ["rotated"]}, timeout=5)
    assert answer.json() == {
        "api_keys": ["rotated"],
        "track_only_keys": [TRACK_ONLY_KEY],
        "no_permission_keys": [NO_PERMISSION_KEY],
    }
    assert track(server, {"attributes": [member(x=1)]}, headers=new_key).status_code == 201
    assert track(server, {"attributes": [member(x=1)]}).status_code == 401  # the old key is gone


def test_given_malformed_keys_update_when_posted_then_400(server: SandboxServer) -> None:
    response = requests.post(f"{server.url}/sandbox/keys", json={"api_keys": "one"}, timeout=5)
    assert response.status_code == 400
    assert server.api_keys == frozenset({KEY})


def test_given_track_only_keys_posted_when_keys_read_then_they_may_track_but_not_delete(
    server: SandboxServer,
) -> None:
    answer = requests.post(f"{server.url}/sandbox/keys", json={"track_only_keys": ["tracker"]}, timeout=5)
    assert answer.status_code == 200 and answer.json()["track_only_keys"] == ["tracker"]
    assert answer.json()["api_keys"] == [KEY]  # the sets not named are kept
    assert requests.get(f"{server.url}/sandbox/keys", timeout=5).json() == answer.json()
    tracker = {"Authorization": "Bearer tracker"}
    assert track(server, {"attributes": [member(x=1)]}, headers=tracker).status_code == 201
    assert delete(server, {"external_ids": ["member-1"]}, headers=tracker).status_code == 403


def test_given_delete_rate_limit_posted_when_faults_read_then_both_limits_shown_and_applied(
    server: SandboxServer,
) -> None:
    before = requests.get(f"{server.url}/sandbox/faults", timeout=5).json()
    assert (before["rate_limit"], before["delete_rate_limit"]) == ("3000/3s", "20000/60s")
    answer = requests.post(f"{server.url}/sandbox/faults", json={"delete_rate_limit": [5, 1]}, timeout=5).json()
    assert (answer["rate_limit"], answer["delete_rate_limit"]) == ("3000/3s", "5/1s")
    assert server.delete_rate_limit == (5, 1.0)
    requests.post(f"{server.url}/sandbox/faults", json={"delete_rate_limit": None}, timeout=5)
    assert server.delete_rate_limit is None and server.rate_limit == (3000, 3.0)


def test_given_bad_delete_rate_limit_when_posted_then_400_naming_it_and_nothing_changed(
    server: SandboxServer,
) -> None:
    response = requests.post(
        f"{server.url}/sandbox/faults", json={"delete_rate_limit": "often", "fail_next": 2}, timeout=5
    )
    assert response.status_code == 400 and "delete_rate_limit" in response.json()["message"]
    assert server.faults.fail_next == 0 and server.delete_rate_limit == (20000, 60.0)


def test_given_fail_external_ids_set_over_http_then_every_request_carrying_that_user_answers_500(
    server: SandboxServer,
) -> None:
    answer = requests.post(f"{server.url}/sandbox/faults", json={"fail_external_ids": ["bad-1"]}, timeout=5)
    assert answer.json()["fail_external_ids"] == ["bad-1"]

    mixed = [track(server, {"attributes": [member("ok-1", x=1), member("bad-1", x=1)]}) for _ in range(3)]
    alone = track(server, {"attributes": [member("ok-1", x=2)]})

    assert [response.status_code for response in mixed] == [500, 500, 500]
    assert alone.status_code == 201
    assert server.store.profile("bad-1") is None


def test_given_fail_external_ids_not_a_list_of_strings_then_400(server: SandboxServer) -> None:
    response = requests.post(f"{server.url}/sandbox/faults", json={"fail_external_ids": "bad-1"}, timeout=5)
    assert response.status_code == 400 and "fail_external_ids" in response.json()["message"]
