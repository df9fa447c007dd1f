"""The kinds of notification, and what each one's channels are by default.

A kind is what a person can switch on or off on the preferences page. Adding one: a `Kind`
member, its default channels below, and the service that emits it (docs/notifications.md)."""

from __future__ import annotations

from django.db import models


class Kind(models.TextChoices):
    APPROVAL_WAITING = "approval_waiting", "An approval is waiting for me"
    RUN_FAILED = "run_failed", "A run I started failed"
    USAGE_WARNING = "usage_warning", "Budget and quota warnings"
    LISTING_MODERATED = "listing_moderated", "Moderation decisions on my listings"
    REVIEW_REPLY = "review_reply", "Replies to my reviews"
    INVITATION = "invitation", "Invitations to a workspace"
    AUTO_UPGRADE_HELD = "auto_upgrade_held", "Automatic upgrades that were held"


# (in the inbox, by email) when a person has not chosen otherwise.
DEFAULTS: dict[str, tuple[bool, bool]] = {
    Kind.APPROVAL_WAITING: (True, True),
    Kind.RUN_FAILED: (True, True),
    Kind.USAGE_WARNING: (True, True),
    Kind.LISTING_MODERATED: (True, True),
    Kind.REVIEW_REPLY: (True, False),
    Kind.INVITATION: (True, False),
    Kind.AUTO_UPGRADE_HELD: (True, True),
}

# The invitation email carries the one-time link and goes to an address, not to an account
# (tenants/services.py sends it to everyone invited): these kinds have no email switch.
NO_EMAIL_CHOICE = frozenset({Kind.INVITATION})
