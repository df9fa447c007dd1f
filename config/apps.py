from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The composition root (docs/decisions.md, "Layers"): the only package that may import every
    app. Installed for its management commands (`dev`, `seed_demo`); it has no models."""

    name = "config"
    label = "project"
    verbose_name = "Agent Market"
