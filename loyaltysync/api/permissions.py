"""Who may use the API: any authenticated, active user (a token from the admin, or a session)."""

from rest_framework.permissions import IsAuthenticated


class IsApiUser(IsAuthenticated):
    """Every endpoint needs an authenticated user; inactive users' tokens are refused by DRF already."""
