"""The demo workspace uses the marketplace like a customer would: it installs a few catalogue
agents, runs each once on its first example input (inline, on the offline provider), and
reviews them. Installs, ratings and run figures on the demo marketplace are therefore real,
made by the same services a user goes through. Idempotent: what exists is left alone."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from django.conf import settings
from django_tenants.utils import schema_context

from agents.runs.executor import execute_run
from agents.services import agent_run_start
from billing.stripe_client import stripe_client, stripe_errors, stripe_mode
from marketplace import connect, services
from marketplace.models import CreatorAccount, Install, Listing, Publisher, Review
from marketplace.templatetags.marketplace import example_text
from tenants.permissions import Access

# (listing slug, stars, review text)
DEMO_REVIEWS: tuple[tuple[str, int, str], ...] = (
    (
        "support-reply-drafter",
        5,
        "First replies now go out in minutes, and the flags for what a human must check are "
        "exactly the ones our leads used to add by hand.",
    ),
    (
        "sql-writer",
        5,
        "Writes the query and says what it assumed about our tables: easy to check.",
    ),
    ("proofreader", 4, "Clean corrections with a list of what changed. Sometimes too formal."),
    (
        "cold-email-writer",
        4,
        "Short and specific. We still edit the opening line, but far less than before.",
    ),
    ("daily-planner", 5, "Turns my messy list into a day I can actually follow."),
    ("escalation-summarizer", 3, "Good structure; long threads lose a detail or two."),
)


def seed_demo_marketplace(*, access: Access) -> int:
    """Install, run and review the DEMO_REVIEWS listings in the access's workspace. Returns
    the number of listings installed now."""
    installed = 0
    for slug, stars, text in DEMO_REVIEWS:
        listing = Listing.objects.filter(slug=slug).first()
        if listing is None or not listing.is_public or listing.kind != Listing.Kind.AGENT:
            continue
        install = Install.objects.filter(
            listing=listing, workspace=access.workspace, uninstalled_at__isnull=True
        ).first()
        if install is None:
            install = services.install(access=access, listing=listing)
            installed += 1
        if install.runs_completed == 0:
            _run_once(access, install, listing)
        if not Review.objects.filter(listing=listing, workspace=access.workspace).exists():
            services.review_save(access=access, listing=listing, rating=stars, text=text)
    return installed


def _run_once(access: Access, install: Install, listing: Listing) -> None:
    """One run of the installed copy, executed here like a worker would (a worker that also
    gets the queued task finds the run taken and does nothing). Its completion records the
    listing's run figures through marketplace.telemetry."""
    examples = listing.current_version.example_inputs if listing.current_version else []
    text = example_text(examples[0]) if examples else f"Show me what {listing.title} does."
    with schema_context(access.workspace.schema_name):
        run = agent_run_start(access=access, agent_id=install.object_id, input=text)
        execute_run(run.pk)
    install.refresh_from_db()


def demo_creator_account(*, publisher: Publisher) -> CreatorAccount | None:
    """Give the demo's creator `publisher` a payouts account, in Stripe test mode only (None
    when billing is off or live). Against the local Stripe emulator its onboarding is completed
    on the emulator's page; against Stripe's test mode the creator finishes it from Publish.
    Idempotent."""
    if stripe_mode() != "test":
        return None
    account, _ = connect.creator_account_create(publisher=publisher, country="US")
    if account.onboarded:
        return account
    site = getattr(settings, "SITE_URL", "") or "http://127.0.0.1:8000"
    with stripe_errors("open the demo creator's payouts setup"):
        link = stripe_client().v1.account_links.create(
            params={
                "account": account.stripe_account_id,
                "type": "account_onboarding",
                "refresh_url": site,
                "return_url": site,
            }
        )
    url = urlsplit(link.url)
    if url.hostname in ("127.0.0.1", "localhost"):  # the emulator: submit its onboarding page
        emulator = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            emulator.request("POST", f"{url.path}/complete")  # answers a redirect: not followed
            emulator.getresponse().read()
        finally:
            emulator.close()
    return connect.creator_account_sync(stripe_account_id=account.stripe_account_id)
