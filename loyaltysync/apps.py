from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyaltysync"
    verbose_name = "Loyalty program"
    default_auto_field = "django.db.models.BigAutoField"
