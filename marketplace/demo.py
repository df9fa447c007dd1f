"""The demo workspace uses the marketplace like a customer would: it installs a few catalogue
agents, runs each once on its first example input (inline, on the offline provider), and
reviews them. Installs, ratings and run figures on the demo marketplace are therefore real,
made by the same services a user goes through. Idempotent: what exists is left alone."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django_tenants.utils import schema_context

from accounts.models import User
from agents.runs.executor import execute_run
from agents.services import agent_create, agent_run_start
from billing.stripe_client import stripe_client, stripe_errors, stripe_mode
from marketplace import connect, purchases, services
from marketplace.models import (
    Category,
    CreatorAccount,
    Install,
    Listing,
    Publisher,
    Purchase,
    Review,
)
from marketplace.templatetags.marketplace import example_text
from tenants import services as tenant_services
from tenants.models import Role, Workspace
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
    if urlsplit(link.url).hostname in EMULATOR_HOSTS:  # the emulator: submit its onboarding page
        _submit_on_emulator(link.url)
    return connect.creator_account_sync(stripe_account_id=account.stripe_account_id)


DEMO_CREATOR_SLUG = "demo-creator"
DEMO_CUSTOMER_SLUG = "demo-customer"
DEMO_PAID_TITLE = "Meeting Minutes Pro"


@dataclass(frozen=True)
class DemoShop:
    listing: Listing
    creator: Workspace
    sold: bool  # the example customer's purchase is active (a sale on the Earnings page)


def seed_demo_shop(*, owner: User, staff: User) -> DemoShop | None:
    """The demo's paid listing, in Stripe test mode only (None otherwise): `owner` also owns a
    demo creator's workspace, whose payouts account is onboarded on the test-mode pages (the
    emulator's, completed here) and which sells "Meeting Minutes Pro" at $9.00 one-time,
    approved by `staff`; an example customer's workspace has bought it through the test-mode
    Checkout, so the creator's Earnings page has a sale (pending for the hold). The demo
    workspace itself has not bought it: buying it is the newcomer's to try. Idempotent."""
    if stripe_mode() != "test":
        return None
    creator = _workspace(owner, DEMO_CREATOR_SLUG, "Demo Creator Studio")
    seller = Access(workspace=creator, user=owner, role=Role.OWNER)
    publisher = services.publisher_get_or_create(access=seller)
    account = demo_creator_account(publisher=publisher)
    if account is None or not account.onboarded:
        return None  # Stripe's own test mode: the creator finishes onboarding on Publish
    listing = Listing.objects.filter(publisher=publisher, title=DEMO_PAID_TITLE).first()
    if listing is None:
        with schema_context(creator.schema_name):
            agent = agent_create(
                access=seller,
                name=DEMO_PAID_TITLE,
                model="offline:demo",
                system_prompt=(
                    "Turn a meeting transcript into minutes: decisions, action items with "
                    "owners and dates, and open questions. Never invent a decision."
                ),
            )
        version = services.listing_publish(
            access=seller,
            kind="agent",
            source_id=agent.pk,
            title=DEMO_PAID_TITLE,
            summary="Minutes with decisions, owners and dates from any meeting transcript.",
            description=(
                "Paste a transcript or rough notes. You get:\n\n"
                "- **Decisions**, each with who made it;\n"
                "- **Action items** with an owner and a date (or *no date given*);\n"
                "- **Open questions** nobody answered.\n\n"
                "It never invents a decision: anything unclear is listed as a question."
            ),
            category_slug=_category_slug(),
            tags=["Meetings"],
            example_inputs=["Ana: let's ship Friday. Ben: I'll write the release notes by Thu."],
            pricing=Listing.Pricing.ONE_TIME,
            price_cents=900,
        )
        services.version_approve(user=staff, version=version)
        listing = Listing.objects.get(pk=version.listing_id)
    customer = _workspace(owner, DEMO_CUSTOMER_SLUG, "Example Customer")
    buyer = Access(workspace=customer, user=owner, role=Role.OWNER)
    bought = Purchase.objects.filter(buyer=customer, listing=listing)
    if not bought.filter(status__in=[Purchase.Status.ACTIVE]).exists():
        site = getattr(settings, "SITE_URL", "") or "http://127.0.0.1:8000"
        started = purchases.purchase_start(
            access=buyer, listing=listing, success_url=site, cancel_url=site
        )
        if started.checkout_url:
            session_id = _submit_on_emulator(started.checkout_url)
            # What the webhook receiver does with checkout.session.completed (the server that
            # would receive it is not running yet): re-read the session and apply it.
            purchases.checkout_completed(session_id=session_id)
    return DemoShop(
        listing=listing,
        creator=creator,
        sold=bought.filter(status=Purchase.Status.ACTIVE).exists(),
    )


def _category_slug() -> str:
    """The catalogue's first category (imported before), or one made for the demo."""
    first = Category.objects.order_by("position").first()
    if first is None:
        first, _ = Category.objects.get_or_create(slug="productivity", name="Productivity")
    return first.slug


def _workspace(owner: User, slug: str, name: str) -> Workspace:
    found = Workspace.objects.filter(slug=slug).first()
    return found or tenant_services.workspace_create(user=owner, name=name, slug=slug)


EMULATOR_HOSTS = ("127.0.0.1", "localhost")


def _submit_on_emulator(page_url: str) -> str:
    """Submit one of the local Stripe emulator's hosted pages (Pay on a checkout, Submit on an
    onboarding) as a person would; returns the page's object id (its last path segment)."""
    url = urlsplit(page_url)
    if url.hostname not in EMULATOR_HOSTS:
        raise RuntimeError("The demo submits only the local Stripe emulator's pages.")
    emulator = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        emulator.request("POST", f"{url.path}/complete")  # answers a redirect: not followed
        emulator.getresponse().read()
    finally:
        emulator.close()
    return url.path.rstrip("/").rsplit("/", 1)[1]
