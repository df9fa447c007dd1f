from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from billing.plans import on_workspace_created
        from billing.quotas import seats_room_require
        from billing.usage import register_billing_meters
        from core.hooks import member_inviting, workspace_created

        workspace_created.subscribe(on_workspace_created)
        member_inviting.subscribe(seats_room_require)
        register_billing_meters()
