"""The API docs page loads Swagger UI from this site (drf-spectacular-sidecar), not from a CDN."""

from __future__ import annotations

import re

from django.contrib.staticfiles import finders
from django.urls import reverse

# Anything that names a host: scheme-qualified or protocol-relative URLs.
EXTERNAL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


def test_the_docs_page_names_no_external_host(client, db):
    response = client.get(reverse("api-docs"))
    page = response.content.decode()

    assert response.status_code == 200
    assert [url for url in EXTERNAL.findall(page) if url not in ("//testserver", "http://testserver")] == []
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page


def test_the_swagger_ui_files_are_static_files_of_the_site():
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css")
