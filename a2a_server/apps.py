from django.apps import AppConfig


class A2aServerConfig(AppConfig):
    name = "a2a_server"
    verbose_name = "A2A server"
