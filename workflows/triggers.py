"""Triggers: how a workflow starts without a person (docs/workflows.md, "Triggers").

- **Inbound webhook**: `POST /hooks/workflows/<workspace>/<token>/`, signed like our outbound
  webhooks (`X-AgentMarket-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`)
  with the trigger's own secret, which is shown once when made or rotated.
- **Schedule**: a 5-field cron expression in a time zone, with fixed run inputs. A periodic
  task (workflows/periodic.py) fires the due ones every minute; `next_run_at` is advanced in
  the transaction that starts the run, under a row lock, so a slot runs at most once however
  many beat ticks overlap.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from agents.outbound.guard import check_public_url
from agents.webhooks import signature_problem, workspace_signing_secret
from core import crypto
from core.exceptions import ApplicationError, NotFound, ValidationFailed
from tenants import audit
from tenants.models import Workspace
from tenants.permissions import Access, Perm
from workflows.models import StepRun, Trigger, Workflow, WorkflowRun, WorkflowVersion
from workflows.runs import inputs_check, run_start, webhook_wait_resume
from workflows.selectors import version_get

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1_000_000

TRIGGER_CREATED = audit.Action.TRIGGER_CREATED
TRIGGER_UPDATED = audit.Action.TRIGGER_UPDATED
TRIGGER_DELETED = audit.Action.TRIGGER_DELETED
TRIGGER_SECRET_ROTATED = audit.Action.TRIGGER_SECRET_ROTATED


# --- Cron expressions ---------------------------------------------------------------------

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Every pattern that fires at all fires within this many days (29 February included).
_HORIZON_DAYS = 366 * 8 + 2


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS)),
    _Field("day of week", 0, 7, tuple(_WEEKDAYS)),
)


def _cron_error(message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid schedule: {message}", fields={"cron": [message]})


def _value(field: _Field, text: str) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.low + field.names.index(lowered)
    if not lowered.isdigit():
        hint = f" (or a name like {field.names[0]})" if field.names else ""
        raise _cron_error(f"{field.name}: '{text}' is not a number{hint}.")
    number = int(lowered)
    if not field.low <= number <= field.high:
        raise _cron_error(f"{field.name}: {number} is out of range {field.low}–{field.high}.")
    return number


def _parse_field(field: _Field, text: str) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it was `*` (matters for the day fields)."""
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise _cron_error(f"{field.name}: empty item in '{text}'.")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _cron_error(f"{field.name}: the step in '{part}' must be a positive number.")
            step = int(step_text)
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(field, first), _value(field, last)
            if low > high:
                raise _cron_error(f"{field.name}: the range '{base}' runs backwards.")
        else:
            low = _value(field, base)
            high = field.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values), text == "*"


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression: minute, hour, day of month, month, day of week
    (0 or 7 = Sunday). Lists (`1,15`), ranges (`1-5`), steps (`*/15`, `9-17/2`), month and
    weekday names, and the macros @hourly, @daily, @weekly, @monthly, @yearly. As in Vixie
    cron, when both day fields are restricted a day matching either one fires."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        text = " ".join((expression or "").split())
        if not text:
            raise _cron_error("enter a cron expression, e.g. '0 9 * * 1-5' (09:00 on weekdays).")
        parts = _MACROS.get(text.lower(), text).split(" ")
        if len(parts) != 5:
            raise _cron_error(
                f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}."
            )
        parsed = [_parse_field(field, part) for field, part in zip(_FIELDS, parts, strict=True)]
        weekdays = frozenset(7 if d == 0 else d for d in parsed[4][0])  # Sunday is 7 below
        cron = cls(
            expression=text,
            minutes=parsed[0][0],
            hours=parsed[1][0],
            days=parsed[2][0],
            months=parsed[3][0],
            weekdays=weekdays,
            any_day=parsed[2][1],
            any_weekday=parsed[4][1],
        )
        if cron.next_after(datetime(2000, 1, 1, tzinfo=UTC), UTC) is None:
            raise _cron_error(f"'{text}' never fires (no such day in those months).")
        return cron

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def next_after(self, after: datetime, tz: ZoneInfo | Any) -> datetime | None:
        """The first fire time strictly after `after`, as an aware UTC datetime.

        Wall-clock times are read in `tz`. A time the clocks skip (spring forward) fires at
        the instant it had before the change (02:30 → 03:30 summer time); a repeated hour
        (fall back) fires once, on its first occurrence."""
        local = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
        start = local + timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        day = start.date()
        for _ in range(_HORIZON_DAYS):
            if self.matches_day(day):
                for hour in hours:
                    for minute in minutes:
                        wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
                        if wall.replace(tzinfo=None) < start:
                            continue
                        instant = wall.astimezone(UTC)
                        if instant > after:
                            return instant
            day += timedelta(days=1)
        return None

    def next_times(self, count: int, *, after: datetime, tz: ZoneInfo | Any) -> list[datetime]:
        times: list[datetime] = []
        current = after
        while len(times) < count:
            found = self.next_after(current, tz)
            if found is None:
                break
            times.append(found)
            current = found
        return times


def timezone_parse(name: str) -> ZoneInfo:
    name = (name or "").strip()
    if name not in _timezone_names():
        raise ValidationFailed(
            f"Unknown time zone '{name}'.",
            fields={"timezone": ["Use an IANA time zone name such as Europe/Paris or UTC."]},
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover (listed yet absent)
        raise ValidationFailed(
            f"Unknown time zone '{name}'.", fields={"timezone": ["Unknown time zone."]}
        ) from exc


_ZONES: frozenset[str] | None = None


def _timezone_names() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def timezone_choices() -> list[str]:
    return sorted(_timezone_names())


def schedule_preview(
    cron: str, tz_name: str, *, count: int = 3, after: datetime | None = None
) -> list[datetime]:
    """The next `count` fire times, aware datetimes in the schedule's zone (for display)."""
    tz = timezone_parse(tz_name)
    parsed = Cron.parse(cron)
    return [
        t.astimezone(tz) for t in parsed.next_times(count, after=after or timezone.now(), tz=tz)
    ]


# --- Reads --------------------------------------------------------------------------------


def trigger_list(*, access: Access, workflow: Workflow) -> QuerySet[Trigger]:
    access.require(Perm.WORKSPACE_VIEW)
    return Trigger.objects.filter(workflow=workflow).select_related("version").order_by("id")


def trigger_get(*, access: Access, workflow: Workflow, trigger_id: int) -> Trigger:
    trigger = trigger_list(access=access, workflow=workflow).filter(pk=trigger_id).first()
    if trigger is None:
        raise NotFound("No trigger with that id on this workflow.")
    return trigger


def webhook_url(*, workspace: Workspace, trigger: Trigger) -> str:
    path = reverse(
        "workflow_hook_trigger", kwargs={"workspace": workspace.slug, "token": trigger.token}
    )
    site_url: str = settings.SITE_URL
    return site_url.rstrip("/") + path


def resume_url(*, workspace: Workspace, resume_token: str) -> str:
    """Where a webhook-wait step is resumed (signed with the workspace's webhook secret)."""
    path = reverse(
        "workflow_hook_resume",
        kwargs={"workspace": workspace.slug, "resume_token": resume_token},
    )
    site_url: str = settings.SITE_URL
    return site_url.rstrip("/") + path


# --- Writes -------------------------------------------------------------------------------


def _pinned_version(workflow: Workflow, number: int | None) -> WorkflowVersion | None:
    if number is None:
        return None
    version = WorkflowVersion.objects.filter(workflow=workflow, number=number).first()
    if version is None:
        raise ValidationFailed(
            f"This workflow has no version {number}.",
            fields={"version": [f"No version {number}; leave it empty to use the active one."]},
        )
    return version


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@transaction.atomic
def webhook_trigger_create(
    *, access: Access, workflow: Workflow, name: str = "", version_number: int | None = None
) -> tuple[Trigger, str]:
    """A new inbound webhook; returns it with its secret, which is never shown again."""
    access.require(Perm.BUILD)
    secret = _new_secret()
    trigger = Trigger.objects.create(
        workflow=workflow,
        kind=Trigger.Kind.WEBHOOK,
        name=name.strip()[:80],
        version=_pinned_version(workflow, version_number),
        token=secrets.token_urlsafe(24),
        secret_encrypted=crypto.encrypt(secret),
        created_by_id=access.actor_id,
    )
    audit.record_for(
        access,
        action=TRIGGER_CREATED,
        target=trigger,
        target_label=f"Webhook trigger of {workflow.name}",
        metadata={"workflow": workflow.pk, "kind": trigger.kind},
    )
    return trigger, secret


@transaction.atomic
def webhook_trigger_rotate_secret(*, access: Access, trigger: Trigger) -> str:
    """A new secret for an inbound webhook; requests signed with the old one fail at once."""
    access.require(Perm.BUILD)
    if trigger.kind != Trigger.Kind.WEBHOOK:
        raise ValidationFailed("Only webhook triggers have a secret.")
    secret = _new_secret()
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    trigger.secret_encrypted = crypto.encrypt(secret)
    trigger.save(update_fields=["secret_encrypted"])
    audit.record_for(
        access, action=TRIGGER_SECRET_ROTATED, target=trigger, metadata={"trigger": trigger.pk}
    )
    return secret


def trigger_secret_hint(trigger: Trigger) -> str:
    """What a page shows of a webhook secret after creation: its last characters, masked."""
    if not trigger.secret_encrypted:
        return ""
    return crypto.mask(crypto.decrypt(trigger.secret_encrypted))


def schedule_inputs_check(
    *, workflow: Workflow, version: WorkflowVersion | None, inputs: Any
) -> dict[str, Any]:
    """The fixed inputs of a schedule, checked against the definition it will run."""

    if not isinstance(inputs, dict):
        raise ValidationFailed(
            "Schedule inputs must be a JSON object.",
            fields={"inputs": ['Enter a JSON object, e.g. {"topic": "weekly report"}.']},
        )
    target = version or workflow.active_version
    if target is None:
        raise ValidationFailed(
            "This workflow has no published version to schedule.",
            fields={"version": ["Publish a version first, or pin one."]},
        )
    try:
        return dict(inputs_check(target.definition, inputs))
    except ValidationFailed as exc:
        messages = [f"{name}: {m}" for name, ms in exc.fields.items() for m in ms]
        raise ValidationFailed(exc.message, fields={"inputs": messages or [exc.message]}) from exc


@transaction.atomic
def schedule_save(
    *,
    access: Access,
    workflow: Workflow,
    cron: str,
    timezone_name: str = "UTC",
    inputs: Any = None,
    name: str = "",
    version_number: int | None = None,
    trigger: Trigger | None = None,
    now: datetime | None = None,
) -> Trigger:
    """Create a schedule (or update `trigger`); `next_run_at` is computed from the new rule."""
    access.require(Perm.BUILD)
    parsed = Cron.parse(cron)
    tz = timezone_parse(timezone_name)
    version = _pinned_version(workflow, version_number)
    checked = schedule_inputs_check(workflow=workflow, version=version, inputs=inputs or {})
    next_run_at = parsed.next_after(now or timezone.now(), tz)
    if trigger is None:
        trigger = Trigger(
            workflow=workflow, kind=Trigger.Kind.SCHEDULE, created_by_id=access.actor_id
        )
        action = TRIGGER_CREATED
    else:
        trigger = Trigger.objects.select_for_update().get(pk=trigger.pk, workflow=workflow)
        if trigger.kind != Trigger.Kind.SCHEDULE:
            raise ValidationFailed("Only schedules have a cron expression.")
        action = TRIGGER_UPDATED
    trigger.name = name.strip()[:80]
    trigger.cron = parsed.expression
    trigger.timezone = tz.key
    trigger.inputs = checked
    trigger.version = version
    trigger.next_run_at = next_run_at if trigger.enabled else None
    trigger.save()
    audit.record_for(
        access,
        action=action,
        target=trigger,
        target_label=f"Schedule of {workflow.name}",
        metadata={"workflow": workflow.pk, "cron": trigger.cron, "timezone": trigger.timezone},
    )
    return trigger


@transaction.atomic
def trigger_set_enabled(
    *, access: Access, trigger: Trigger, enabled: bool, now: datetime | None = None
) -> Trigger:
    """Turn a trigger on or off. A schedule turned back on starts from the next slot: the
    slots it missed while off are not made up."""
    access.require(Perm.BUILD)
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    trigger.enabled = enabled
    if trigger.kind == Trigger.Kind.SCHEDULE:
        trigger.next_run_at = (
            Cron.parse(trigger.cron).next_after(now or timezone.now(), ZoneInfo(trigger.timezone))
            if enabled
            else None
        )
    trigger.save(update_fields=["enabled", "next_run_at"])
    audit.record_for(access, action=TRIGGER_UPDATED, target=trigger, metadata={"enabled": enabled})
    return trigger


@transaction.atomic
def trigger_delete(*, access: Access, trigger: Trigger) -> None:
    access.require(Perm.BUILD)
    audit.record_for(
        access,
        action=TRIGGER_DELETED,
        target=trigger,
        metadata={"workflow": trigger.workflow_id, "kind": trigger.kind},
    )
    trigger.delete()


# --- Firing -------------------------------------------------------------------------------


class SignatureRefused(ApplicationError):
    code = "signature_invalid"
    status = 401


def webhook_inputs(body: bytes) -> dict[str, Any]:
    """The run inputs an inbound request carries: its JSON object, or that object's `inputs`
    member when it is the only key."""
    if len(body) > MAX_BODY_BYTES:
        raise ValidationFailed("The body is too large.", fields={"body": ["At most 1 MB."]})
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "The body is not valid JSON.", fields={"body": [f"Not JSON: {exc}"[:200]]}
        ) from exc
    if not isinstance(document, dict):
        raise ValidationFailed(
            "The body must be a JSON object.", fields={"body": ["Send a JSON object."]}
        )
    if set(document) == {"inputs"} and isinstance(document["inputs"], dict):
        return document["inputs"]
    return document


def webhook_trigger_fire(*, token: str, signature: str, body: bytes) -> WorkflowRun:
    """Start a run from a signed inbound request, in the current workspace's schema.

    NotFound for an unknown or disabled token; SignatureRefused (401) when the signature is
    missing, malformed, stale or wrong: then nothing is started."""

    trigger = (
        Trigger.objects.select_related("workflow", "version")
        .filter(kind=Trigger.Kind.WEBHOOK, token=token, enabled=True)
        .first()
    )
    if trigger is None or not token or trigger.workflow.archived_at is not None:
        raise NotFound("No enabled webhook trigger at this address.")
    problem = signature_problem(
        crypto.decrypt(trigger.secret_encrypted),
        signature,
        body,
        tolerance_seconds=SIGNATURE_TOLERANCE_SECONDS,
    )
    if problem is not None:
        logger.warning(
            "refused an inbound workflow webhook for trigger %s: %s", trigger.pk, problem
        )
        raise SignatureRefused(problem)
    inputs = webhook_inputs(body)
    with transaction.atomic():
        run = run_start(
            workflow=trigger.workflow,
            inputs=inputs,
            trigger=WorkflowRun.TriggerKind.WEBHOOK,
            version=trigger.version,
            trigger_ref=trigger,
        )
        Trigger.objects.filter(pk=trigger.pk).update(last_fired_at=timezone.now())
    return run


def api_run_start(
    *,
    access: Access,
    workflow: Workflow,
    inputs: dict[str, Any],
    version_number: int | None = None,
    callback_url: str = "",
) -> WorkflowRun:
    """Start a run for an API caller (trigger "api"): `version_number` pins a version (None:
    the active one). `callback_url`, POSTed a signed `workflow_run.finished` when the run ends,
    must be http(s) to a public host: ValidationFailed naming `callback_url` otherwise."""

    if callback_url:
        check_public_url(callback_url, field="callback_url")
    return run_start(
        workflow=workflow,
        inputs=inputs,
        trigger=WorkflowRun.TriggerKind.API,
        version=version_get(workflow, version_number) if version_number else None,
        api_key_prefix=access.api_key.prefix if access.api_key is not None else "",
        callback_url=callback_url,
        access=access,
    )


def webhook_wait_resume_signed(
    *, workspace: Workspace, token: str, signature: str, body: bytes
) -> StepRun:
    """Resume a webhook-wait step with a signed inbound request's JSON body, in the current
    workspace's schema. The request is signed with the workspace's webhook secret.

    SignatureRefused (401) when the workspace has no secret yet, or the signature is missing,
    malformed, stale or wrong: then nothing changes. ValidationFailed for a body that is not
    JSON; NotFound for an unknown token or a step that is no longer waiting."""

    secret = workspace_signing_secret(workspace)
    if secret is None:
        raise SignatureRefused(
            "This workspace has no webhook secret yet: an owner or admin makes one with "
            "POST /api/v1/webhook-secret/ from a signed-in session."
        )
    problem = signature_problem(
        secret, signature, body, tolerance_seconds=SIGNATURE_TOLERANCE_SECONDS
    )
    if problem is not None:
        raise SignatureRefused(problem)
    return webhook_wait_resume(token=token, payload=_json_payload(body))


def _json_payload(body: bytes) -> Any:
    """An inbound body as JSON; None when empty."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ValidationFailed(
            "The body is not valid JSON.", fields={"body": ["Not JSON."]}
        ) from exc


def schedules_fire_due(*, now: datetime | None = None) -> int:
    """Start one run for each due schedule of the current workspace; returns how many fired.

    Each schedule is locked (skipping rows another tick holds) and its `next_run_at` advanced
    past `now` in the same transaction that starts the run: a slot fires once even when ticks
    overlap, and the slots missed while the beat was down collapse into one run."""
    now = now or timezone.now()
    fired = 0
    seen: set[int] = set()
    while True:
        with transaction.atomic():
            trigger = (
                Trigger.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("workflow", "version")
                .filter(kind=Trigger.Kind.SCHEDULE, enabled=True, next_run_at__lte=now)
                .exclude(pk__in=seen)
                .order_by("next_run_at", "id")
                .first()
            )
            if trigger is None:
                return fired
            seen.add(trigger.pk)
            if _fire_schedule(trigger, now):
                fired += 1


def _fire_schedule(trigger: Trigger, now: datetime) -> bool:
    """Inside the transaction holding the trigger's lock."""

    try:
        trigger.next_run_at = Cron.parse(trigger.cron).next_after(now, ZoneInfo(trigger.timezone))
    except (ApplicationError, ZoneInfoNotFoundError, ValueError):
        logger.warning("schedule %s has an unusable rule; disabling it", trigger.pk)
        trigger.enabled, trigger.next_run_at = False, None
        trigger.save(update_fields=["enabled", "next_run_at"])
        return False
    started = False
    if trigger.workflow.archived_at is None:
        try:
            with transaction.atomic():
                run_start(
                    workflow=trigger.workflow,
                    inputs=dict(trigger.inputs or {}),
                    trigger=WorkflowRun.TriggerKind.SCHEDULE,
                    version=trigger.version,
                    trigger_ref=trigger,
                )
            started = True
        except ApplicationError as exc:
            # The slot is spent either way: a schedule that cannot start (its workflow changed
            # under it) must not be retried every minute.
            logger.warning("schedule %s could not start a run: %s", trigger.pk, exc.message)
    trigger.last_fired_at = now
    trigger.save(update_fields=["next_run_at", "last_fired_at"])
    return started
