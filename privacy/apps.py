from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """Data rights (docs/privacy.md): account export and erasure, workspace export, deletion
    with a grace period, restore and purge. The top of the import layers below `config`: it
    reads and erases every app's tables, and no app imports it."""

    name = "privacy"
    verbose_name = "Data rights"
