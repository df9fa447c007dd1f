from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from agents import references
        from billing import usage
        from workflows.agent_refs import workflow_uses_of_agents
        from workflows.selectors import active_workflow_count

        # The agent pages warn "Used by N workflows" before a rename or an archive.
        references.register(workflow_uses_of_agents)
        # The plan's allowance of active workflows (billing sits below workflows).
        usage.register_meter(
            usage.WORKFLOWS,
            label="Active workflows",
            unit=usage.Unit.COUNT,
            count_fn=lambda _workspace_id, _period_start: active_workflow_count(),
        )
