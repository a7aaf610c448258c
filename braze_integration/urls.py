"""The Braze integration's own URLs outside the admin: the Prometheus metrics."""

from django.urls import path

from . import metrics

urlpatterns = [
    path("metrics", metrics.metrics_view, name="metrics"),
]
