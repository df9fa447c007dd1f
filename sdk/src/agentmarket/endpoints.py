"""Every API operation the client calls, in one table: the client builds its requests only from
here, and tests/sdk/test_schema_contract.py checks each row (path, method, success status and
the fields of its model) against the server's OpenAPI document."""

from __future__ import annotations

from dataclasses import dataclass

from agentmarket import models as m


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as the OpenAPI document writes it, parameters in braces
    status: int  # the success status
    model: type[m.Model] | None  # None: the body is not an object of ours (a document)
    paginated: bool = False
    body: tuple[str, ...] = ()  # the JSON keys the client may send
    query: tuple[str, ...] = ()  # the query parameters the client may send

    def url(self, **params: object) -> str:
        return self.path.format(**params)


PAGE = ("limit", "offset")

ENDPOINTS: dict[str, Endpoint] = {
    "workspace": Endpoint("GET", "/api/v1/workspace/", 200, m.Workspace),
    "agents_list": Endpoint("GET", "/api/v1/agents/", 200, m.Agent, paginated=True, query=PAGE),
    "agent_get": Endpoint("GET", "/api/v1/agents/{id}/", 200, m.Agent),
    "agent_run_start": Endpoint(
        "POST", "/api/v1/agents/{id}/runs/", 202, m.AgentRun, body=("input", "callback_url")
    ),
    "agent_run_get": Endpoint("GET", "/api/v1/agents/{id}/runs/{run_id}/", 200, m.AgentRun),
    "workflows_list": Endpoint(
        "GET",
        "/api/v1/workflows/",
        200,
        m.Workflow,
        paginated=True,
        query=(*PAGE, "include_archived"),
    ),
    "workflow_get": Endpoint("GET", "/api/v1/workflows/{id}/", 200, m.Workflow),
    "workflow_run_start": Endpoint(
        "POST",
        "/api/v1/workflows/{id}/runs/",
        202,
        m.WorkflowRun,
        body=("inputs", "version", "callback_url"),
    ),
    "workflow_run_get": Endpoint("GET", "/api/v1/workflows/runs/{run_id}/", 200, m.WorkflowRun),
    "workflow_run_cancel": Endpoint(
        "POST", "/api/v1/workflows/runs/{run_id}/cancel/", 200, m.WorkflowRun
    ),
    "workflow_step_get": Endpoint("GET", "/api/v1/workflows/steps/{step_id}/", 200, m.Step),
    "workflow_export": Endpoint(
        "GET", "/api/v1/workflows/{id}/export/", 200, None, query=("format", "version")
    ),
    "workflow_import": Endpoint(
        "POST", "/api/v1/workflows/import/", 201, m.Workflow, body=("document", "format", "name")
    ),
    "listing_publish": Endpoint(
        "POST",
        "/api/v1/marketplace/listings/",
        201,
        m.PublishedVersion,
        body=(
            "kind",
            "source_id",
            "title",
            "summary",
            "category",
            "description",
            "tags",
            "changelog",
            "example_inputs",
            "icon",
            "slug",
            "pricing",
            "price_cents",
            "currency",
        ),
    ),
    "listings_published": Endpoint(
        "GET", "/api/v1/marketplace/published/", 200, m.MyListing, paginated=True, query=PAGE
    ),
}
