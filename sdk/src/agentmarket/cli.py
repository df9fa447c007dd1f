"""The `agentmarket` command (docs/sdk.md). Exit status: 0 done, 1 the API refused or a run
failed, 2 a usage or setup problem. Errors are one line on stderr; the key is never printed
beyond its public prefix."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentmarket import config, errors
from agentmarket import models as m
from agentmarket.client import Client, __version__, mask_key

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or no login: exit status 2."""


class RunFailed(Exception):
    """A run ended failed or cancelled: exit status 1 (the message is the run's error)."""


# --- output


def out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


def note(text: str) -> None:
    """Progress and notices go to stderr, so stdout holds only the result."""
    print(text, file=sys.stderr, flush=True)


def out_json(value: Any) -> None:
    out(json.dumps(value, indent=2, sort_keys=True, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def show_output(value: Any) -> None:
    if isinstance(value, str):
        out(value)
    elif isinstance(value, dict) and set(value) == {"text"} and isinstance(value["text"], str):
        out(value["text"])
    else:
        out_json(value)


# --- the client from the saved login


def client_for(args: argparse.Namespace) -> Client:
    settings = config.load()
    if settings is None:
        raise UsageError(
            "Not logged in: run `agentmarket login --url URL` "
            "(or set AGENTMARKET_URL and AGENTMARKET_API_KEY)."
        )
    return Client(settings.base_url, settings.api_key, timeout=args.timeout)


# --- login


def cmd_login(args: argparse.Namespace) -> int:
    saved = config.load()
    base_url = (args.url or (saved.base_url if saved else "")).rstrip("/")
    if not base_url:
        raise UsageError("Give the server's address with --url (e.g. https://app.example.com).")
    if args.key_stdin:
        key = sys.stdin.readline().strip()
    elif os.environ.get("AGENTMARKET_API_KEY"):
        key = os.environ["AGENTMARKET_API_KEY"].strip()
    else:
        key = getpass.getpass("API key (amk_…): ").strip()
    if not key:
        raise UsageError("No API key given.")
    warning = ""
    with Client(base_url, key, timeout=args.timeout) as client:
        try:
            workspace = client.workspace()
            where = f"{workspace.name} ({workspace.slug})"
        except errors.PermissionDenied:
            # The key is valid (authenticated) but may not read the workspace itself.
            where = "its workspace"
            warning = "The key lacks the workspace.view scope: listing and watching will fail."
    path = config.save(config.Settings(base_url=base_url, api_key=key))
    if args.json:
        out_json({"base_url": base_url, "key": mask_key(key), "config": str(path)})
    else:
        out(f"Logged in to {where} at {base_url} with key {mask_key(key)}.")
        out(f"Saved to {path} (readable by you only).")
    if warning:
        note(f"Warning: {warning}")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    removed = config.remove()
    out(f"Removed {config.config_path()}." if removed else "Not logged in.")
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace) -> int:
    settings = config.load()
    with client_for(args) as client:
        workspace = client.workspace()
    key = mask_key(settings.api_key) if settings else ""
    if args.json:
        out_json({**workspace.raw, "base_url": client.base_url, "key": key})
    else:
        out(f"{workspace.name} ({workspace.slug}) at {client.base_url}, key {key}")
    return EXIT_OK


# --- agents


def cmd_agents_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        agents = list(client.iter_agents())
    if args.json:
        out_json([a.raw for a in agents])
    elif not agents:
        out("No agents in this workspace yet.")
    else:
        table(
            ["ID", "NAME", "MODEL", "CATEGORY"],
            [(a.id, a.name, a.model, a.category) for a in agents],
        )
    return EXIT_OK


def cmd_agents_run(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.input == "-" else args.input
    with client_for(args) as client:
        run = client.start_agent_run(args.agent_id, text)
        if args.no_wait:
            if args.json:
                out_json(run.raw)
            else:
                out(f"Started run {run.id} of agent {args.agent_id} ({run.status}).")
                out(f"Watch it: agentmarket agents watch {args.agent_id} {run.id}")
            return EXIT_OK
        return _follow_agent_run(client, args, args.agent_id, run.id)


def cmd_agents_watch(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return _follow_agent_run(client, args, args.agent_id, args.run_id)


def _follow_agent_run(client: Client, args: argparse.Namespace, agent_id: int, run_id: int) -> int:
    run: m.AgentRun | None = None
    for run in client.watch_agent_run(
        agent_id, run_id, interval=args.poll_interval, timeout=args.wait
    ):
        if not args.json:
            note(f"run {run.id}: {run.status}")
    if run is None:  # the watch yields the run at least once
        raise RunFailed(f"Run {run_id} was not seen.")
    if args.json:
        out_json(run.raw)
    elif run.status == "succeeded":
        show_output(run.output_data if run.output_data is not None else run.output)
        note(f"tokens {run.input_tokens} in / {run.output_tokens} out, cost ${run.cost_usd or 0}")
    if run.status != "succeeded":
        raise RunFailed(f"Run {run.id} {run.status}: {run.error or 'no error given'}")
    return EXIT_OK


# --- workflows


def cmd_workflows_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        workflows = list(client.iter_workflows(include_archived=args.archived))
    if args.json:
        out_json([w.raw for w in workflows])
    elif not workflows:
        out("No workflows in this workspace yet.")
    else:
        table(
            ["ID", "NAME", "ACTIVE VERSION", "CATEGORY"],
            [(w.id, w.name, w.active_version, w.category) for w in workflows],
        )
    return EXIT_OK


def parse_inputs(pairs: Sequence[str], inputs_json: str | None) -> dict[str, Any]:
    """`--inputs-json '{...}'` (or `@file`), then each `--input name=text` or
    `--input name:=<JSON value>` on top."""
    inputs: dict[str, Any] = {}
    if inputs_json:
        source = inputs_json
        if source.startswith("@"):
            source = _read_file(source[1:])
        try:
            loaded = json.loads(source)
        except ValueError as exc:
            raise UsageError(f"--inputs-json is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("--inputs-json must be a JSON object of input names to values.")
        inputs.update(loaded)
    for pair in pairs:
        name, typed, value = pair.partition(":=")
        if typed and "=" not in name:
            try:
                inputs[name] = json.loads(value)
            except ValueError as exc:
                raise UsageError(f"--input {name}:= needs a JSON value: {exc}") from exc
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--input takes name=value (or name:=JSON), not {pair!r}.")
        inputs[name] = value
    return inputs


def cmd_workflows_run(args: argparse.Namespace) -> int:
    inputs = parse_inputs(args.input or [], args.inputs_json)
    with client_for(args) as client:
        run = client.start_workflow_run(args.workflow_id, inputs, version=args.version)
        if args.watch:
            return _follow_workflow_run(client, args, run.id)
    if args.json:
        out_json(run.raw)
    else:
        out(f"Started run {run.id} of {run.workflow_name} v{run.version} ({run.status}).")
        out(f"Watch it: agentmarket runs watch {run.id}")
    return EXIT_OK


def cmd_runs_watch(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return _follow_workflow_run(client, args, args.run_id)


def _follow_workflow_run(client: Client, args: argparse.Namespace, run_id: int) -> int:
    run: m.WorkflowRun | None = None
    for event in client.watch_workflow_run(run_id, interval=args.poll_interval, timeout=args.wait):
        run = event.run
        if args.json:
            payload: dict[str, Any] = {"event": event.kind, "run": run.id, "status": run.status}
            if event.step is not None:
                payload.update(event.step.raw)
                payload.update(event="step", run=run.id, step=event.step.node_id)
            else:
                payload.update(output=run.output, error=run.error)
            print(json.dumps(payload, sort_keys=True, default=str), flush=True)
        elif event.step is not None:
            out(_step_line(event.step))
        else:
            out(f"run {run.id} {run.status}")
    if run is None:  # the watch yields the run at least once
        raise RunFailed(f"Run {run_id} was not seen.")
    if not args.json and run.status == "succeeded":
        show_output(run.output)
    if run.status != "succeeded":
        raise RunFailed(f"Run {run.id} {run.status}: {run.error or 'no error given'}")
    return EXIT_OK


def _step_line(step: m.Step) -> str:
    line = f"  step {step.node_id} ({step.node_type}) {step.status}"
    if step.attempt > 1:
        line += f", attempt {step.attempt}"
    if step.duration_ms is not None and step.finished:
        line += f" in {step.duration_ms} ms"
    if step.error:
        line += f": {step.error}"
    return line


def cmd_runs_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        run = client.get_workflow_run(args.run_id)
    if args.json:
        out_json(run.raw)
        return EXIT_OK
    out(f"run {run.id} of {run.workflow_name} v{run.version}: {run.status}")
    table(
        ["STEP", "TYPE", "STATUS", "ATTEMPT", "MS"],
        [(s.node_id, s.node_type, s.status, s.attempt, s.duration_ms) for s in run.steps],
    )
    if run.finished and run.status == "succeeded":
        show_output(run.output)
    elif run.error:
        out(f"error: {run.error}")
    return EXIT_OK


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        run = client.cancel_workflow_run(args.run_id)
    if args.json:
        out_json(run.raw)
    else:
        out(f"Run {run.id} of {run.workflow_name} v{run.version} is {run.status}.")
    return EXIT_OK


def cmd_workflows_export(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        document = client.export_workflow(
            args.workflow_id, format=args.format, version=args.version
        )
    if not document.endswith("\n"):
        document += "\n"
    if args.output and args.output != "-":
        Path(args.output).write_text(document, encoding="utf-8")
        note(f"Wrote workflow {args.workflow_id} as {args.format} to {args.output}.")
    else:
        sys.stdout.write(document)
        sys.stdout.flush()
    return EXIT_OK


def cmd_workflows_import(args: argparse.Namespace) -> int:
    document = sys.stdin.read() if args.file == "-" else _read_file(args.file)
    fmt = args.format
    if fmt is None and args.file != "-":
        suffix = Path(args.file).suffix.lower()
        fmt = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
    with client_for(args) as client:
        workflow = client.import_workflow(document, format=fmt, name=args.name)
    if args.json:
        out_json(workflow.raw)
    else:
        out(
            f"Imported workflow {workflow.id} {workflow.name!r} "
            f"(active version {workflow.active_version})."
        )
    return EXIT_OK


# --- marketplace


def _price_label(version: m.PublishedVersion) -> str:
    if version.pricing == "free":
        return "free"
    unit = {"one_time": "one-time", "per_run": "per run", "monthly": "a month"}
    amount = f"${version.price_cents / 100:,.2f}"
    return f"{amount} {unit.get(version.pricing, version.pricing)}"


def cmd_listings_publish(args: argparse.Namespace) -> int:
    description = _read_file(args.description_file) if args.description_file else args.description
    with client_for(args) as client:
        version = client.publish_listing(
            kind=args.kind,
            source_id=args.source_id,
            title=args.title,
            summary=args.summary,
            category=args.category,
            description=description or "",
            tags=args.tag or [],
            changelog=args.changelog or "",
            example_inputs=args.example or [],
            slug=args.slug,
            icon=args.icon or "",
            pricing=args.pricing,
            price=args.price,
            currency=args.currency,
        )
    if args.json:
        out_json(version.raw)
    else:
        out(
            f"Submitted {version.listing} version {version.number} for review ({version.status}, "
            f"{_price_label(version)})."
        )
        out("Follow it with: agentmarket listings list")
    return EXIT_OK


def cmd_listings_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        listings = list(client.iter_my_listings())
    if args.json:
        out_json([listing.raw for listing in listings])
    elif not listings:
        out("This workspace has published nothing yet.")
    else:
        rows = []
        for listing in listings:
            latest = listing.versions[0] if listing.versions else None
            rows.append(
                (
                    listing.slug,
                    listing.kind,
                    listing.title,
                    "yes" if listing.is_public else "no",
                    f"v{latest.number} {latest.status}" if latest else None,
                    latest.moderation_reason if latest else None,
                )
            )
        table(["SLUG", "KIND", "TITLE", "PUBLIC", "LATEST", "REASON"], rows)
    return EXIT_OK


def _read_file(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"Cannot read {name}: {exc.strerror or exc}") from exc


# --- the parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # `--json` after the subcommand too; SUPPRESS keeps a subcommand from resetting one given
    # before it (the main parser's own `--json` is a separate action with default False).
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser = argparse.ArgumentParser(
        prog="agentmarket", description="Agent Market from the command line (docs/sdk.md)."
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--version", action="version", version=f"agentmarket {__version__}")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=float(os.environ.get("AGENTMARKET_POLL_INTERVAL", "1")),
        help="seconds between polls while watching a run (default 1)",
    )
    parser.add_argument(
        "--wait", type=float, default=600.0, help="give up watching after this many seconds"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: Any, name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, help=text, description=text, parents=[common]
        )
        sub.set_defaults(handler=handler)
        return sub

    login = command(commands, "login", cmd_login, "save the server address and an API key")
    login.add_argument("--url", help="the server, e.g. https://app.example.com")
    login.add_argument(
        "--key-stdin", action="store_true", help="read the key from stdin (not a prompt)"
    )
    command(commands, "logout", cmd_logout, "forget the saved key")
    command(commands, "whoami", cmd_whoami, "the workspace the key acts in")

    agents = commands.add_parser("agents", help="list, run and watch agents").add_subparsers(
        dest="subcommand", metavar="COMMAND", required=True
    )
    command(agents, "list", cmd_agents_list, "the workspace's agents")
    run = command(agents, "run", cmd_agents_run, "run an agent and print its answer")
    run.add_argument("agent_id", type=int, metavar="AGENT_ID")
    run.add_argument("--input", required=True, help="the question (- reads stdin)")
    run.add_argument("--no-wait", action="store_true", help="print the run's id and return")
    watch = command(agents, "watch", cmd_agents_watch, "follow an agent run until it ends")
    watch.add_argument("agent_id", type=int, metavar="AGENT_ID")
    watch.add_argument("run_id", type=int, metavar="RUN_ID")

    workflows = commands.add_parser(
        "workflows", help="list, run, export and import workflows"
    ).add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    wf_list = command(workflows, "list", cmd_workflows_list, "the workspace's workflows")
    wf_list.add_argument("--archived", action="store_true", help="include archived ones")
    wf_run = command(workflows, "run", cmd_workflows_run, "start a workflow run")
    wf_run.add_argument("workflow_id", type=int, metavar="WORKFLOW_ID")
    wf_run.add_argument(
        "--input", action="append", metavar="NAME=VALUE", help="an input (NAME:=JSON for typed)"
    )
    wf_run.add_argument(
        "--inputs-json", metavar="JSON", help="all inputs as a JSON object, or @file"
    )
    wf_run.add_argument("--version", type=int, help="run this version (default: the active one)")
    wf_run.add_argument("--watch", action="store_true", help="follow it until it ends")
    export = command(workflows, "export", cmd_workflows_export, "a workflow as a document")
    export.add_argument("workflow_id", type=int, metavar="WORKFLOW_ID")
    export.add_argument("--format", choices=["yaml", "json"], default="yaml")
    export.add_argument("--version", type=int, help="default: the active version")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default stdout)")
    imp = command(workflows, "import", cmd_workflows_import, "a new workflow from a document")
    imp.add_argument("file", metavar="FILE", help="a .yaml or .json export (- reads stdin)")
    imp.add_argument("--name", help="default: the document's name")
    imp.add_argument("--format", choices=["yaml", "json"], help="default: from the file name")

    runs = commands.add_parser("runs", help="watch, show and cancel workflow runs").add_subparsers(
        dest="subcommand", metavar="COMMAND", required=True
    )
    for name in ("watch", "tail"):
        follow = command(
            runs, name, cmd_runs_watch, "print each change of a run and its steps until it ends"
        )
        follow.add_argument("run_id", type=int, metavar="RUN_ID")
    show = command(runs, "show", cmd_runs_show, "a run and its steps, now")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    cancel = command(runs, "cancel", cmd_runs_cancel, "stop a run (its running steps finish)")
    cancel.add_argument("run_id", type=int, metavar="RUN_ID")

    listings = commands.add_parser("listings", help="publish to the marketplace").add_subparsers(
        dest="subcommand", metavar="COMMAND", required=True
    )
    publish = command(
        listings, "publish", cmd_listings_publish, "submit an agent or workflow for review"
    )
    publish.add_argument("--kind", choices=["agent", "workflow"], required=True)
    publish.add_argument(
        "--id", dest="source_id", type=int, required=True, help="the agent's or workflow's id"
    )
    publish.add_argument("--title", required=True)
    publish.add_argument("--summary", required=True)
    publish.add_argument("--category", required=True, help="a category slug")
    publish.add_argument("--description", help="Markdown")
    publish.add_argument("--description-file", metavar="FILE")
    publish.add_argument("--tag", action="append")
    publish.add_argument("--example", action="append", help="an example input")
    publish.add_argument("--changelog")
    publish.add_argument("--slug", help="a new version of this listing of yours")
    publish.add_argument("--icon")
    publish.add_argument(
        "--pricing",
        choices=["free", "one_time", "per_run", "monthly"],
        help="the version's price model (default: a new version keeps the listing's price; "
        "a new listing is free)",
    )
    publish.add_argument(
        "--price", metavar="DOLLARS", help="the price in dollars, e.g. 9.00 (0.25 per run)"
    )
    publish.add_argument("--currency", choices=["usd"], help="default: the listing's (usd)")
    command(listings, "list", cmd_listings_list, "this workspace's listings and their review")
    return parser


def _describe(exc: errors.ApiError, args: argparse.Namespace) -> str:
    if isinstance(exc, errors.AuthenticationFailed):
        return f"{exc.describe()} Check the key, or log in again with `agentmarket login`."
    if isinstance(exc, errors.NotFound):
        subject = _subject(args)  # the API's sentence does not repeat the id asked for
        if subject:
            return f"{subject}: {exc.describe()}"
    if isinstance(exc, errors.RateLimited) and exc.retry_after is not None:
        return f"{exc.describe()} Retry in {exc.retry_after:g} s."
    return exc.describe()


def _subject(args: argparse.Namespace) -> str:
    for attribute, label in (
        ("run_id", "Run"),
        ("agent_id", "Agent"),
        ("workflow_id", "Workflow"),
        ("source_id", args.__dict__.get("kind", "").capitalize() or "Object"),
    ):
        value = getattr(args, attribute, None)
        if value is not None:
            return f"{label} {value}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (UsageError, errors.InvalidArgument) as exc:
        note(f"agentmarket: {exc}")
        return EXIT_USAGE
    except errors.ApiError as exc:
        note(f"agentmarket: {_describe(exc, args)} (HTTP {exc.status})")
        return EXIT_FAILED
    except (errors.AgentMarketError, RunFailed) as exc:
        note(f"agentmarket: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        note("agentmarket: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
