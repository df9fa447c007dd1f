"""Triggers: cron rules and time zones, schedules fired by the periodic task (one run per due
slot, even when ticks overlap), signed inbound webhooks (bad signature → 401 and no run), the
webhook-wait resume hook, and the trigger pages (BUILD only; outsiders get 404)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.exceptions import ValidationFailed
from workflows.triggers import Cron, schedule_preview, timezone_parse

PARIS = ZoneInfo("Europe/Paris")


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- Cron rules


def test_weekday_mornings_in_a_time_zone() -> None:
    times = Cron.parse("0 9 * * 1-5").next_times(3, after=_utc(2026, 3, 6, 10, 0), tz=PARIS)
    # Friday 6 March 2026 09:00 Paris has passed; next: Monday to Wednesday, 08:00 UTC.
    assert times == [_utc(2026, 3, 9, 8, 0), _utc(2026, 3, 10, 8, 0), _utc(2026, 3, 11, 8, 0)]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", _utc(2026, 1, 1, 10, 7), _utc(2026, 1, 1, 10, 15)),
        ("*/15 * * * *", _utc(2026, 1, 1, 10, 15), _utc(2026, 1, 1, 10, 30)),  # strictly after
        ("0 0 1 1 *", _utc(2026, 6, 1), _utc(2027, 1, 1)),
        ("@monthly", _utc(2026, 1, 31, 12), _utc(2026, 2, 1)),
        ("@hourly", _utc(2026, 1, 1, 10, 0, 30), _utc(2026, 1, 1, 11, 0)),
        ("0 0 29 2 *", _utc(2026, 1, 1), _utc(2028, 2, 29)),  # next leap day
        ("30 12 * jan,jul sun", _utc(2026, 1, 1), _utc(2026, 1, 4, 12, 30)),
        ("0 0 * * 7", _utc(2026, 1, 1), _utc(2026, 1, 4)),  # 7 is Sunday too
        ("0 8-18/5 * * *", _utc(2026, 1, 1, 9), _utc(2026, 1, 1, 13)),
        # both day fields restricted: either matches (1st of the month, or a Monday)
        ("0 12 1 * mon", _utc(2026, 1, 1, 13), _utc(2026, 1, 5, 12)),
    ],
)
def test_next_fire_time(expression: str, after: datetime, expected: datetime) -> None:
    assert Cron.parse(expression).next_after(after, UTC) == expected


def test_daylight_saving_changes_neither_skip_nor_double_a_day() -> None:
    daily = Cron.parse("30 2 * * *")
    spring = daily.next_times(3, after=_utc(2026, 3, 28), tz=PARIS)
    autumn = daily.next_times(3, after=_utc(2026, 10, 24), tz=PARIS)
    # 29 March 02:30 does not exist in Paris: it runs at 03:30 summer time (01:30 UTC).
    assert [t.astimezone(PARIS).strftime("%d %H:%M") for t in spring] == [
        "28 02:30",
        "29 03:30",
        "30 02:30",
    ]
    # 25 October 02:30 happens twice: it runs once.
    assert [t.astimezone(PARIS).strftime("%d %H:%M") for t in autumn] == [
        "24 02:30",
        "25 02:30",
        "26 02:30",
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "enter a cron expression"),
        ("* * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 3"),
        ("* * * * * *", "got 6"),
        ("61 * * * *", "minute: 61 is out of range 0–59"),
        ("0 24 * * *", "hour: 24 is out of range 0–23"),
        ("0 0 0 * *", "day of month: 0 is out of range 1–31"),
        ("0 0 * 13 *", "month: 13 is out of range 1–12"),
        ("0 0 * * 8", "day of week: 8 is out of range 0–7"),
        ("0 0 * foo *", "month: 'foo' is not a number (or a name like jan)"),
        ("*/0 * * * *", "the step in '*/0' must be a positive number"),
        ("5-1 * * * *", "the range '5-1' runs backwards"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_bad_rules_are_refused_naming_the_cron_field(expression: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        Cron.parse(expression)
    assert message in excinfo.value.fields["cron"][0]


def test_time_zones_are_iana_names() -> None:
    assert timezone_parse("Europe/Paris").key == "Europe/Paris"
    assert timezone_parse("UTC").key == "UTC"
    for bad in ("Mars/Olympus", "", "../etc/passwd", "CET+1"):
        with pytest.raises(ValidationFailed) as excinfo:
            timezone_parse(bad)
        assert "timezone" in excinfo.value.fields


def test_preview_shows_the_next_three_times_in_the_schedules_zone() -> None:
    times = schedule_preview("0 9 * * 1-5", "America/New_York", after=_utc(2026, 7, 3, 14))
    assert [t.strftime("%a %d %H:%M %Z") for t in times] == [
        "Mon 06 09:00 EDT",
        "Tue 07 09:00 EDT",
        "Wed 08 09:00 EDT",
    ]
