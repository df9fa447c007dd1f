from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from agents import references
        from workflows.agent_refs import workflow_uses_of_agents

        # The agent pages warn "Used by N workflows" before a rename or an archive.
        references.register(workflow_uses_of_agents)
