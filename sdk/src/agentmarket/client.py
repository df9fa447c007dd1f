"""The synchronous client: one API key, one workspace (the key's)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Generic
from urllib.parse import parse_qs, urlsplit

import httpx

from agentmarket import errors
from agentmarket import models as m
from agentmarket.endpoints import ENDPOINTS, Endpoint

__version__ = "0.1.0"

# GETs are retried on a 503 or a connection error, this many times at most, waiting
# RETRY_BACKOFF * 2**attempt seconds (or the server's Retry-After, capped) between tries.
DEFAULT_RETRIES = 2
RETRY_BACKOFF = 0.5
MAX_RETRY_WAIT = 10.0


@dataclass(frozen=True)
class Page(Generic[m.M]):
    count: int | None
    results: tuple[m.M, ...]
    next_offset: int | None


PRICINGS = ("free", "one_time", "per_run", "monthly")


def price_to_cents(price: str | int | Decimal) -> int:
    """A price in dollars ("9", "9.00", `Decimal("0.25")`) as cents; `errors.InvalidArgument`
    for anything that is not a non-negative amount with at most two decimals. (The server
    checks the bounds: $0.50 to $10,000, $0.05 per run.)"""
    if isinstance(price, float | bool):
        raise errors.InvalidArgument('price: give dollars as a string or Decimal, e.g. "9.00".')
    text = str(price).strip().removeprefix("$")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise errors.InvalidArgument(
            f"price: {str(price)!r} is not an amount in dollars, e.g. 9.00."
        ) from None
    if not amount.is_finite() or amount < 0:
        raise errors.InvalidArgument(
            f"price: {str(price)!r} is not an amount in dollars, e.g. 9.00."
        )
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise errors.InvalidArgument(f"price: {str(price)!r} has more than two decimals (cents).")
    return int(cents)


def price_fields(
    pricing: str | None, price: str | int | Decimal | None, currency: str | None
) -> dict[str, Any]:
    """The publish body's price fields; a part left out (None) is not sent, so the server keeps
    the listing's current one (a new listing is free)."""
    body: dict[str, Any] = {}
    if pricing is not None:
        if pricing not in PRICINGS:
            raise errors.InvalidArgument(
                f"pricing: one of {', '.join(PRICINGS)} (not {pricing!r})."
            )
        body["pricing"] = pricing
    if price is not None:
        cents = price_to_cents(price)
        if pricing == "free" and cents:
            raise errors.InvalidArgument("price: a free version has no price (leave it out).")
        if pricing not in (None, "free") and not cents:
            raise errors.InvalidArgument(f"price: a {pricing} version needs a price above 0.")
        body["price_cents"] = cents
    elif pricing == "free":
        body["price_cents"] = 0
    if currency is not None:
        code = currency.strip().lower()
        if len(code) != 3 or not code.isalpha():
            raise errors.InvalidArgument(
                f"currency: a three-letter code such as usd (not {currency!r})."
            )
        body["currency"] = code
    return body


def mask_key(key: str) -> str:
    """What may be shown of a key: its public prefix (`amk_1a2b3c4d_…`), never the secret."""
    parts = key.split("_")
    if len(parts) >= 3:
        return f"{parts[0]}_{parts[1]}_…"
    return key[:4] + "…"


class Client:
    """`Client("https://app.example.com", "amk_…")`; use as a context manager or `close()`.

    Every method raises an `errors.ApiError` subclass for an error answer and
    `errors.ConnectionFailed` when the server cannot be reached."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"agentmarket-sdk/{__version__}",
            },
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing

    def _send(
        self,
        endpoint: Endpoint,
        *,
        path: Mapping[str, object] | None = None,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        url = endpoint.url(**(path or {}))
        # Only what the table declares (and the schema test checked) goes over the wire.
        if not set(body or {}) <= set(endpoint.body) or not set(params or {}) <= set(
            endpoint.query
        ):
            raise ValueError(f"{endpoint.method} {endpoint.path} sends an undeclared field")
        headers = {"Accept": accept} if accept else None
        attempts = 1 + (self.retries if endpoint.method == "GET" else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.request(
                    endpoint.method, url, params=params, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                if last:
                    raise errors.ConnectionFailed(
                        f"Could not reach {self.base_url}: {exc or type(exc).__name__}"
                    ) from exc
                self._sleep(RETRY_BACKOFF * 2**attempt)
                continue
            if response.status_code == 503 and not last:
                self._sleep(self._retry_wait(response, attempt))
                continue
            if response.status_code >= 400:
                raise self._error(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _retry_wait(response: httpx.Response, attempt: int) -> float:
        try:
            wanted = float(response.headers.get("Retry-After", ""))
        except ValueError:
            wanted = RETRY_BACKOFF * 2**attempt
        return min(max(wanted, 0.0), MAX_RETRY_WAIT)

    @staticmethod
    def _error(response: httpx.Response) -> errors.ApiError:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        return errors.error_from_response(
            response.status_code, body, {k.lower(): v for k, v in response.headers.items()}
        )

    def _one(self, name: str, model: type[m.M], **kwargs: Any) -> m.M:
        response = self._send(ENDPOINTS[name], **kwargs)
        return model.from_json(response.json())

    def _page(
        self, name: str, model: type[m.M], *, limit: int, offset: int, **filters: str | int
    ) -> Page[m.M]:
        params: dict[str, str | int] = {"limit": limit, "offset": offset, **filters}
        data = self._send(ENDPOINTS[name], params=params).json()
        next_offset: int | None = None
        if data.get("next"):
            query = parse_qs(urlsplit(str(data["next"])).query)
            next_offset = int(query.get("offset", [offset + limit])[0])
        return Page(
            count=data.get("count"),
            results=tuple(model.from_json(item) for item in data.get("results", [])),
            next_offset=next_offset,
        )

    def _iterate(
        self, name: str, model: type[m.M], *, page_size: int, **filters: str | int
    ) -> Iterator[m.M]:
        offset: int | None = 0
        while offset is not None:
            page = self._page(name, model, limit=page_size, offset=offset, **filters)
            yield from page.results
            offset = page.next_offset

    # --- the workspace

    def workspace(self) -> m.Workspace:
        """The key's workspace (needs the `workspace.view` scope)."""
        return self._one("workspace", m.Workspace)

    # --- agents

    def list_agents(self, *, limit: int = 50, offset: int = 0) -> Page[m.Agent]:
        return self._page("agents_list", m.Agent, limit=limit, offset=offset)

    def iter_agents(self, *, page_size: int = 50) -> Iterator[m.Agent]:
        """Every agent, fetching page after page as the iteration goes."""
        return self._iterate("agents_list", m.Agent, page_size=page_size)

    def get_agent(self, agent_id: int) -> m.Agent:
        return self._one("agent_get", m.Agent, path={"id": agent_id})

    def start_agent_run(
        self, agent_id: int, input: str, *, callback_url: str | None = None
    ) -> m.AgentRun:
        """Queue a run (202); poll it with `get_agent_run` or `wait_agent_run`."""
        body: dict[str, Any] = {"input": input}
        if callback_url:
            body["callback_url"] = callback_url
        return self._one("agent_run_start", m.AgentRun, path={"id": agent_id}, body=body)

    def get_agent_run(self, agent_id: int, run_id: int) -> m.AgentRun:
        return self._one("agent_run_get", m.AgentRun, path={"id": agent_id, "run_id": run_id})

    def watch_agent_run(
        self, agent_id: int, run_id: int, *, interval: float = 1.0, timeout: float = 600.0
    ) -> Iterator[m.AgentRun]:
        """Yield the run each time its status changes (first as it is now), until it ends.
        The API has no stream for a run's answer: this polls every `interval` seconds."""
        deadline = time.monotonic() + timeout
        seen = ""
        while True:
            run = self.get_agent_run(agent_id, run_id)
            if run.status != seen:
                seen = run.status
                yield run
            if run.finished:
                return
            if time.monotonic() >= deadline:
                raise errors.WaitTimedOut(
                    f"Run {run_id} is still {run.status} after {timeout:g} seconds."
                )
            self._sleep(interval)

    def wait_agent_run(
        self, agent_id: int, run_id: int, *, interval: float = 1.0, timeout: float = 600.0
    ) -> m.AgentRun:
        """The run once it has ended (succeeded, failed or canceled)."""
        *_, run = self.watch_agent_run(agent_id, run_id, interval=interval, timeout=timeout)
        return run

    def run_agent(
        self, agent_id: int, input: str, *, interval: float = 1.0, timeout: float = 600.0
    ) -> m.AgentRun:
        """Start a run and wait for it to end."""
        run = self.start_agent_run(agent_id, input)
        return self.wait_agent_run(agent_id, run.id, interval=interval, timeout=timeout)

    # --- workflows

    def list_workflows(
        self, *, limit: int = 50, offset: int = 0, include_archived: bool = False
    ) -> Page[m.Workflow]:
        return self._page(
            "workflows_list",
            m.Workflow,
            limit=limit,
            offset=offset,
            include_archived=str(include_archived).lower(),
        )

    def iter_workflows(
        self, *, page_size: int = 50, include_archived: bool = False
    ) -> Iterator[m.Workflow]:
        return self._iterate(
            "workflows_list",
            m.Workflow,
            page_size=page_size,
            include_archived=str(include_archived).lower(),
        )

    def get_workflow(self, workflow_id: int) -> m.Workflow:
        return self._one("workflow_get", m.Workflow, path={"id": workflow_id})

    def start_workflow_run(
        self,
        workflow_id: int,
        inputs: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        callback_url: str | None = None,
    ) -> m.WorkflowRun:
        """Queue a run of the active version (or `version`); 202 with the run."""
        body: dict[str, Any] = {"inputs": dict(inputs or {})}
        if version is not None:
            body["version"] = version
        if callback_url:
            body["callback_url"] = callback_url
        return self._one("workflow_run_start", m.WorkflowRun, path={"id": workflow_id}, body=body)

    def get_workflow_run(self, run_id: int) -> m.WorkflowRun:
        """A run with every step's state, output, tokens and cost."""
        return self._one("workflow_run_get", m.WorkflowRun, path={"run_id": run_id})

    def cancel_workflow_run(self, run_id: int) -> m.WorkflowRun:
        return self._one("workflow_run_cancel", m.WorkflowRun, path={"run_id": run_id})

    def get_step(self, step_id: int) -> m.Step:
        return self._one("workflow_step_get", m.Step, path={"step_id": step_id})

    def watch_workflow_run(
        self, run_id: int, *, interval: float = 1.0, timeout: float = 600.0
    ) -> Iterator[m.RunEvent]:
        """Yield an event for each change of the run's status and of each step's status (first
        the state it is in now), until the run ends. The API has no event stream: this polls
        the run every `interval` seconds, so a step that starts and ends between two polls
        shows only its last state."""
        deadline = time.monotonic() + timeout
        run_status = ""
        step_states: dict[int, str] = {}
        while True:
            run = self.get_workflow_run(run_id)
            for step in run.steps:
                state = f"{step.status}/{step.attempt}"
                if step_states.get(step.id) != state and step.status != "pending":
                    step_states[step.id] = state
                    yield m.RunEvent(run=run, step=step)
            if run.status != run_status:
                run_status = run.status
                yield m.RunEvent(run=run)
            if run.finished:
                return
            if time.monotonic() >= deadline:
                raise errors.WaitTimedOut(
                    f"Run {run_id} is still {run.status} after {timeout:g} seconds."
                )
            self._sleep(interval)

    def wait_workflow_run(
        self, run_id: int, *, interval: float = 1.0, timeout: float = 600.0
    ) -> m.WorkflowRun:
        *_, last = self.watch_workflow_run(run_id, interval=interval, timeout=timeout)
        return last.run

    def export_workflow(
        self, workflow_id: int, *, format: str = "yaml", version: int | None = None
    ) -> str:
        """The workflow as a JSON or YAML document that `import_workflow` takes back."""
        params: dict[str, str | int] = {"format": format}
        if version is not None:
            params["version"] = version
        response = self._send(
            ENDPOINTS["workflow_export"],
            path={"id": workflow_id},
            params=params,
            accept="application/json, application/yaml",
        )
        return response.text

    def import_workflow(
        self, document: str, *, format: str | None = None, name: str | None = None
    ) -> m.Workflow:
        """A new workflow from an exported document (the format is detected when omitted)."""
        body: dict[str, Any] = {"document": document}
        if format:
            body["format"] = format
        if name:
            body["name"] = name
        return self._one("workflow_import", m.Workflow, body=body)

    # --- marketplace

    def publish_listing(
        self,
        *,
        kind: str,
        source_id: int,
        title: str,
        summary: str,
        category: str,
        description: str = "",
        tags: Sequence[str] = (),
        changelog: str = "",
        example_inputs: Sequence[str] = (),
        slug: str | None = None,
        icon: str = "",
        pricing: str | None = None,
        price: str | int | Decimal | None = None,
        currency: str | None = None,
    ) -> m.PublishedVersion:
        """Submit an agent or workflow (`kind`) for review: a new listing, or a new version of
        `slug`. The version is `pending` until staff moderate it.

        `pricing` is one of `PRICINGS`; `price` is in dollars (`"9.00"`, sent as cents). Left
        out, a new version keeps the listing's current price (a new listing is free);
        `pricing="free"` makes it free. Raises `errors.InvalidArgument` before sending for a
        price that is not an amount."""
        prices = price_fields(pricing, price, currency)
        body: dict[str, Any] = {
            "kind": kind,
            "source_id": source_id,
            "title": title,
            "summary": summary,
            "category": category,
            "description": description,
            "tags": list(tags),
            "changelog": changelog,
            "example_inputs": list(example_inputs),
            "icon": icon,
            **prices,
        }
        if slug:
            body["slug"] = slug
        return self._one("listing_publish", m.PublishedVersion, body=body)

    def iter_my_listings(self, *, page_size: int = 50) -> Iterator[m.MyListing]:
        """This workspace's listings as a publisher, with each version's moderation status."""
        return self._iterate("listings_published", m.MyListing, page_size=page_size)
