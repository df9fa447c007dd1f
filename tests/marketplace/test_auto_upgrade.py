"""Automatic upgrades of installs: off by default (pinned), on (upgraded once per version),
with the installing workspace's evaluation gate (pass: upgraded; fail: held, naming the
evaluation), idempotent when the sweep runs twice; the page's option for owners and admins
only (members, viewers, outsiders and anonymous visitors refused)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import User
from agents.models import Agent
from agents.services import agent_create, agent_update
from billing.models import Plan
from billing.plans import default_plan
from core.exceptions import Conflict, PermissionDenied, ValidationFailed
from evals import services as evals
from evals.models import Evaluation
from marketplace import auto_upgrade
from marketplace import services as market
from marketplace.models import Category, CreatorAccount, Install, Listing, Publisher, Purchase
from notifications.models import Notification
from tenants.audit import Action
from tenants.models import AuditEvent, Membership, Role
from tenants.permissions import Access
from tests.helpers.personas import World, access_of, logged_in, make_user
from tests.helpers.workflows import flow, transform
from workflows import services as workflow_services
from workflows.models import Workflow
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db


class Setup:
    def __init__(self, world: World) -> None:
        Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
        self.staff = User.objects.create_superuser(email="mod@platform.test", password="x")
        self.alpha = access_of(world.owner, world.workspace_a)
        self.bravo = access_of(world.outsider, world.workspace_b)  # bravo's owner
        with schema_context(world.workspace_a.schema_name):
            self.agent = agent_create(access=self.alpha, name="Helper", model="offline:demo")
        self.publish_and_approve()
        listing = Listing.objects.get()
        self.install = market.install(access=self.bravo, listing=listing)
        self.world = world

    def publish_and_approve(self) -> None:
        version = market.listing_publish(
            access=self.alpha,
            kind="agent",
            source_id=self.agent.pk,
            title="Helper",
            summary="Helps.",
            category_slug="support",
        )
        market.version_approve(user=self.staff, version=version)

    def new_version(self) -> None:
        with schema_context(self.alpha.workspace.schema_name):
            agent_update(access=self.alpha, agent_id=self.agent.pk, system_prompt="Be brief.")
        self.publish_and_approve()

    def suite(self, pattern: str) -> int:
        with schema_context(self.bravo.workspace.schema_name):
            dataset = evals.dataset_import(
                access=self.bravo,
                name=f"Checks {pattern}",
                filename="c.jsonl",
                data=b'{"input": "Say hello"}\n',
            )
            return evals.suite_create(
                access=self.bravo,
                name=f"Suite {pattern}",
                dataset_id=dataset.pk,
                evaluators_spec=[{"kind": "regex", "pattern": pattern}],
            ).pk

    def gate(self) -> None:
        with schema_context(self.bravo.workspace.schema_name):
            evals.gate_policy_set(
                access=self.bravo, require_for_publish=False, require_for_upgrade=True
            )

    def installed(self) -> Install:
        return Install.objects.select_related("version").get(pk=self.install.pk)

    def run_evaluation(self) -> Evaluation:
        """What the worker does with the evaluation the sweep started."""
        with schema_context(self.bravo.workspace.schema_name):
            evaluation = Evaluation.objects.get()
            evals.evaluation_execute(evaluation.pk)
            evaluation.refresh_from_db()
            return evaluation


@pytest.fixture
def setup(world: World) -> Setup:
    return Setup(world)


def _audits(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


def test_without_automatic_upgrades_an_install_stays_pinned(setup: Setup) -> None:
    setup.new_version()
    assert auto_upgrade.auto_upgrade_sweep() == 0
    assert setup.installed().version.number == 1


def test_an_install_upgrades_automatically_once_per_version(setup: Setup) -> None:
    auto_upgrade.auto_upgrade_set(
        access=setup.bravo, install=setup.install, enabled=True, suite_id=None
    )
    assert auto_upgrade.auto_upgrade_sweep() == 0  # nothing newer yet
    setup.new_version()
    assert auto_upgrade.auto_upgrade_sweep() == 1
    assert auto_upgrade.auto_upgrade_sweep() == 0  # the task running twice: one upgrade
    install = setup.installed()
    assert install.version.number == 2
    assert install.auto_note == "Upgraded automatically to version 2."
    assert _audits(Action.LISTING_UPGRADED) == 1
    with schema_context(setup.bravo.workspace.schema_name):
        copy = Agent.objects.get(pk=install.object_id)
        assert copy.current_version is not None
        assert copy.current_version.system_prompt == "Be brief."


def test_with_the_gate_a_passing_evaluation_lets_the_upgrade_through(setup: Setup) -> None:
    setup.gate()
    suite_id = setup.suite("offline")  # the offline model's answers say so
    auto_upgrade.auto_upgrade_set(
        access=setup.bravo, install=setup.install, enabled=True, suite_id=suite_id
    )
    setup.new_version()
    assert auto_upgrade.auto_upgrade_step(install_id=setup.install.pk) == "evaluating"
    # Running again while it is evaluated starts no second evaluation and does not upgrade.
    assert auto_upgrade.auto_upgrade_sweep() == 0
    with schema_context(setup.bravo.workspace.schema_name):
        assert Evaluation.objects.count() == 1
    assert setup.installed().version.number == 1
    evaluation = setup.run_evaluation()
    assert evaluation.status == Evaluation.Status.PASSED
    assert auto_upgrade.auto_upgrade_sweep() == 1
    assert auto_upgrade.auto_upgrade_sweep() == 0
    install = setup.installed()
    assert install.version.number == 2
    assert (
        install.auto_note
        == f"Upgraded automatically to version 2 after evaluation #{evaluation.pk} passed."
    )
    with schema_context(setup.bravo.workspace.schema_name):
        # The trial copy that was evaluated is archived; the install's own copy is not.
        trial = Agent.objects.get(pk=evaluation.agent_id or 0)
        assert trial.archived_at is not None
        assert Agent.objects.get(pk=install.object_id).archived_at is None
        assert Evaluation.objects.count() == 1


def test_with_the_gate_a_failing_evaluation_keeps_the_old_version(
    setup: Setup, outsider_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    setup.gate()
    suite_id = setup.suite("never-said")
    auto_upgrade.auto_upgrade_set(
        access=setup.bravo, install=setup.install, enabled=True, suite_id=suite_id
    )
    setup.new_version()
    auto_upgrade.auto_upgrade_sweep()
    evaluation = setup.run_evaluation()
    assert evaluation.status == Evaluation.Status.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        assert auto_upgrade.auto_upgrade_sweep() == 0
        assert auto_upgrade.auto_upgrade_sweep() == 0
    install = setup.installed()
    # The installing workspace's owner is told once, in the inbox and by email.
    (notice,) = Notification.objects.filter(kind="auto_upgrade_held")
    assert notice.user_id == setup.world.outsider.pk
    assert notice.title == "“Helper” was not upgraded to version 2"
    assert notice.body == install.auto_note
    assert notice.url == "/w/bravo/marketplace/"
    assert notice.email == Notification.Email.PENDING
    assert install.version.number == 1
    assert install.auto_state == "held"
    assert (
        f"Version 2 failed evaluation #{evaluation.pk} (“Suite never-said”: 0/1 cases passed); "
        "this install stays on version 1." == install.auto_note
    )
    assert _audits(Action.LISTING_AUTO_UPGRADE_HELD) == 1
    assert _audits(Action.LISTING_UPGRADED) == 0
    # The members see it on the install's row, with the evaluation's link.
    page = outsider_client.get(reverse("marketplace_workspace", kwargs={"workspace_slug": "bravo"}))
    html = page.content.decode()
    assert "failed evaluation #" in html
    assert (
        reverse(
            "evals_evaluation", kwargs={"workspace_slug": "bravo", "evaluation_id": evaluation.pk}
        )
        in html
    )
    # A manual upgrade is still possible.
    market.upgrade(access=setup.bravo, install=install)
    assert setup.installed().version.number == 2


def test_a_paid_version_without_a_purchase_is_not_installed(setup: Setup, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = "sk_test_" + "key" * 8  # billing on: paid listings sell
    settings.STRIPE_LIVE_MODE = False
    CreatorAccount.objects.create(
        publisher=Publisher.objects.get(),
        stripe_account_id="acct_creator",
        details_submitted=True,
        transfers_active=True,
        payouts_enabled=True,
    )
    auto_upgrade.auto_upgrade_set(
        access=setup.bravo, install=setup.install, enabled=True, suite_id=None
    )
    with schema_context(setup.alpha.workspace.schema_name):
        agent_update(access=setup.alpha, agent_id=setup.agent.pk, system_prompt="Paid now.")
    version = market.listing_publish(
        access=setup.alpha,
        kind="agent",
        source_id=setup.agent.pk,
        title="Helper",
        summary="Helps.",
        category_slug="support",
        pricing="one_time",
        price_cents=1900,
    )
    market.version_approve(user=setup.staff, version=version)
    assert auto_upgrade.auto_upgrade_sweep() == 0
    assert auto_upgrade.auto_upgrade_sweep() == 0
    install = setup.installed()
    assert install.version.number == 1
    assert install.auto_note.startswith(
        "Version 2 was not installed automatically: “Helper” is a paid listing ($19.00 one-time)"
    )
    assert _audits(Action.LISTING_AUTO_UPGRADE_HELD) == 1


def test_the_gate_needs_a_suite_chosen_for_the_install(setup: Setup) -> None:
    setup.gate()
    with pytest.raises(ValidationFailed) as refused:
        auto_upgrade.auto_upgrade_set(
            access=setup.bravo, install=setup.install, enabled=True, suite_id=None
        )
    assert "suite" in refused.value.fields


def test_an_upgrade_held_when_its_enabler_is_no_longer_an_admin(setup: Setup, world: World) -> None:
    admin = make_user("admin@bravo.test")
    Membership.objects.create(user=admin, workspace=world.workspace_b, role=Role.ADMIN)
    access = access_of(admin, world.workspace_b)
    auto_upgrade.auto_upgrade_set(access=access, install=setup.install, enabled=True, suite_id=None)
    Membership.objects.filter(user=admin, workspace=world.workspace_b).update(role=Role.MEMBER)
    setup.new_version()
    assert auto_upgrade.auto_upgrade_sweep() == 0
    install = setup.installed()
    assert install.version.number == 1
    assert "no longer an owner or admin" in install.auto_note


def test_a_member_cannot_turn_it_on(setup: Setup, world: World) -> None:
    member = make_user("member@bravo.test")
    Membership.objects.create(user=member, workspace=world.workspace_b, role=Role.MEMBER)
    with pytest.raises(PermissionDenied):
        auto_upgrade.auto_upgrade_set(
            access=access_of(member, world.workspace_b),
            install=setup.install,
            enabled=True,
            suite_id=None,
        )


# -- the page ---------------------------------------------------------------------------------


def _url(install_id: int, slug: str = "bravo") -> str:
    return reverse(
        "marketplace_auto_upgrade", kwargs={"workspace_slug": slug, "install_id": install_id}
    )


def _form(install_id: int, **values: Any) -> dict[str, Any]:
    return {f"auto-{install_id}-{k}": v for k, v in values.items()}


def test_the_owner_turns_it_on_on_the_page(setup: Setup, outsider_client: Client) -> None:
    page = outsider_client.get(reverse("marketplace_workspace", kwargs={"workspace_slug": "bravo"}))
    assert "Upgrade automatically to new versions" in page.content.decode()
    response = outsider_client.post(_url(setup.install.pk), _form(setup.install.pk, enabled="on"))
    assert response.status_code == 302
    assert setup.installed().auto_upgrade
    assert _audits(Action.LISTING_AUTO_UPGRADE_SET) == 1


def test_the_page_explains_a_missing_suite(setup: Setup, outsider_client: Client) -> None:
    setup.gate()
    response = outsider_client.post(
        _url(setup.install.pk), _form(setup.install.pk, enabled="on"), follow=True
    )
    assert "choose the suite new versions must pass" in response.content.decode()
    assert not setup.installed().auto_upgrade


def test_members_viewers_outsiders_and_anonymous_cannot(setup: Setup, world: World) -> None:
    member = make_user("member@bravo.test")
    Membership.objects.create(user=member, workspace=world.workspace_b, role=Role.MEMBER)
    viewer = make_user("viewer@bravo.test")
    Membership.objects.create(user=viewer, workspace=world.workspace_b, role=Role.VIEWER)
    data = _form(setup.install.pk, enabled="on")
    member_page = logged_in(member).get(
        reverse("marketplace_workspace", kwargs={"workspace_slug": "bravo"})
    )
    assert "Upgrade automatically to new versions" not in member_page.content.decode()
    assert logged_in(member).post(_url(setup.install.pk), data).status_code == 403
    assert logged_in(viewer).post(_url(setup.install.pk), data).status_code == 403
    # alpha's owner is an outsider to bravo; in alpha the install does not exist
    assert logged_in(world.owner).post(_url(setup.install.pk), data).status_code == 404
    assert logged_in(world.owner).post(_url(setup.install.pk, "alpha"), data).status_code == 404
    anonymous = Client().post(_url(setup.install.pk), data)
    assert anonymous.status_code == 302
    assert "/accounts/login/" in anonymous["Location"]
    assert not setup.installed().auto_upgrade


# -- ways out: held versions tried again, trial copies archived, limits ------------------------


def _trial(setup: Setup) -> Agent:
    """The trial copy of version 2 the evaluation evaluates."""
    with schema_context(setup.bravo.workspace.schema_name):
        return Agent.objects.get(pk=Evaluation.objects.get().agent_id or 0)


def _gated_and_evaluating(setup: Setup, access: Access | None = None) -> Agent:
    setup.gate()
    suite_id = setup.suite("offline")
    auto_upgrade.auto_upgrade_set(
        access=access or setup.bravo, install=setup.install, enabled=True, suite_id=suite_id
    )
    setup.new_version()
    assert auto_upgrade.auto_upgrade_sweep() == 0
    assert setup.installed().auto_state == "evaluating"
    trial = _trial(setup)
    assert trial.archived_at is None
    return trial


def test_turning_it_on_again_retries_a_held_version(setup: Setup, world: World) -> None:
    admin = make_user("admin@bravo.test")
    Membership.objects.create(user=admin, workspace=world.workspace_b, role=Role.ADMIN)
    access = access_of(admin, world.workspace_b)
    auto_upgrade.auto_upgrade_set(access=access, install=setup.install, enabled=True, suite_id=None)
    Membership.objects.filter(user=admin, workspace=world.workspace_b).update(role=Role.MEMBER)
    setup.new_version()
    assert auto_upgrade.auto_upgrade_sweep() == 0
    assert "Turn automatic upgrades on again" in setup.installed().auto_note
    # the owner does as the note says
    auto_upgrade.auto_upgrade_set(
        access=setup.bravo, install=setup.install, enabled=True, suite_id=None
    )
    assert setup.installed().auto_note == ""
    assert auto_upgrade.auto_upgrade_sweep() == 1
    install = setup.installed()
    assert install.version.number == 2
    assert install.auto_note == "Upgraded automatically to version 2."


def test_a_paid_version_held_goes_through_once_bought(setup: Setup, settings: Any) -> None:
    test_a_paid_version_without_a_purchase_is_not_installed(setup, settings)
    listing = Listing.objects.get()
    version = listing.current_version
    assert version is not None
    Purchase.objects.create(  # what the payment's webhook leaves
        buyer=setup.bravo.workspace,
        listing=listing,
        version=version,
        publisher=listing.publisher,
        pricing=version.pricing,
        unit_amount_cents=version.price_cents,
        currency=version.currency,
        fee_percent=Decimal(10),
        status=Purchase.Status.ACTIVE,
    )
    assert auto_upgrade.auto_upgrade_sweep() == 1
    install = setup.installed()
    assert install.version.number == 2
    assert install.auto_note == "Upgraded automatically to version 2."
    assert _audits(Action.LISTING_AUTO_UPGRADE_HELD) == 1


def test_a_version_that_cannot_be_evaluated_is_held(world: World, settings: Any) -> None:
    """The installing workspace is at its plan's workflow limit: the trial copy cannot be made.
    The install is held with the reason, once, instead of failing every minute."""
    Category.objects.get_or_create(slug="support", defaults={"name": "Support"})
    staff = User.objects.create_superuser(email="mod@platform.test", password="x")
    alpha = access_of(world.owner, world.workspace_a)
    bravo = access_of(world.outsider, world.workspace_b)
    with schema_context(world.workspace_a.schema_name):
        workflow = workflow_create(
            access=alpha, name="Greeter", definition=flow([transform("greet", "Hello")], [])
        )

    def publish() -> None:
        version = market.listing_publish(
            access=alpha,
            kind="workflow",
            source_id=workflow.pk,
            title="Greeter",
            summary="Greets.",
            category_slug="support",
        )
        market.version_approve(user=staff, version=version)

    publish()
    install = market.install(access=bravo, listing=Listing.objects.get())
    with schema_context(world.workspace_b.schema_name):
        evals.gate_policy_set(access=bravo, require_for_publish=False, require_for_upgrade=True)
        dataset = evals.dataset_import(
            access=bravo, name="Checks", filename="c.jsonl", data=b'{"input": "hi"}\n'
        )
        suite = evals.suite_create(
            access=bravo,
            name="Suite",
            dataset_id=dataset.pk,
            evaluators_spec=[{"kind": "regex", "pattern": "Hello"}],
        )
    auto_upgrade.auto_upgrade_set(access=bravo, install=install, enabled=True, suite_id=suite.pk)
    with schema_context(world.workspace_a.schema_name):
        workflow_services.version_save(
            access=alpha,
            workflow=workflow,
            definition=flow([transform("greet", "Hello there")], []),
            publish=True,
        )
    publish()
    settings.BILLING_QUOTAS = True
    Plan.objects.filter(pk=default_plan().pk).update(workflows=1)  # bravo has its one
    assert auto_upgrade.auto_upgrade_sweep() == 0
    assert auto_upgrade.auto_upgrade_sweep() == 0
    held = Install.objects.select_related("version").get(pk=install.pk)
    assert held.version.number == 1
    assert held.auto_state == "held"
    assert held.auto_note == (
        "Version 2 could not be evaluated: This workspace has 1 workflows, the most its "
        f"{default_plan().name} plan allows. An owner or admin can upgrade the plan "
        f"({default_plan().name} now) on the Billing page; this install stays on version 1."
    )
    assert _audits(Action.LISTING_AUTO_UPGRADE_HELD) == 1
    with schema_context(world.workspace_b.schema_name):
        assert Workflow.objects.count() == 1  # no half-made trial copy
        assert Evaluation.objects.count() == 0


def test_turning_it_off_during_an_evaluation_archives_the_trial(setup: Setup) -> None:
    _gated_and_evaluating(setup)
    auto_upgrade.auto_upgrade_set(
        access=setup.bravo, install=setup.install, enabled=False, suite_id=None
    )
    assert _trial(setup).archived_at is not None
    install = setup.installed()
    assert (install.auto_state, install.auto_trial, install.version.number) == ("", {}, 1)


def test_a_demoted_enabler_during_an_evaluation_archives_the_trial(
    setup: Setup, world: World
) -> None:
    admin = make_user("admin@bravo.test")
    Membership.objects.create(user=admin, workspace=world.workspace_b, role=Role.ADMIN)
    _gated_and_evaluating(setup, access_of(admin, world.workspace_b))
    Membership.objects.filter(user=admin, workspace=world.workspace_b).update(role=Role.MEMBER)
    assert auto_upgrade.auto_upgrade_sweep() == 0
    install = setup.installed()
    assert install.auto_state == "held"
    assert "no longer an owner or admin" in install.auto_note
    assert _trial(setup).archived_at is not None


def test_an_upgrade_by_hand_during_an_evaluation_archives_the_trial(setup: Setup) -> None:
    _gated_and_evaluating(setup)
    market.upgrade(access=setup.bravo, install=setup.installed())
    assert _trial(setup).archived_at is not None
    assert setup.installed().auto_trial == {}
    assert auto_upgrade.auto_upgrade_sweep() == 0


def test_an_evaluation_that_does_not_end_holds_the_upgrade(setup: Setup) -> None:
    _gated_and_evaluating(setup)
    with schema_context(setup.bravo.workspace.schema_name):
        evaluation = Evaluation.objects.get()  # never run: no worker took it
        Evaluation.objects.filter(pk=evaluation.pk).update(
            created_at=timezone.now() - auto_upgrade.GATE_TIMEOUT + timedelta(minutes=1)
        )
    assert auto_upgrade.auto_upgrade_sweep() == 0
    assert setup.installed().auto_state == "evaluating"
    with schema_context(setup.bravo.workspace.schema_name):
        Evaluation.objects.filter(pk=evaluation.pk).update(
            created_at=timezone.now() - auto_upgrade.GATE_TIMEOUT - timedelta(minutes=1)
        )
    assert auto_upgrade.auto_upgrade_sweep() == 0
    install = setup.installed()
    assert install.version.number == 1
    assert install.auto_state == "held"
    assert install.auto_note == (
        f"Evaluation #{evaluation.pk} of version 2 did not end within 6 hours; "
        "this install stays on version 1."
    )
    assert _trial(setup).archived_at is not None


def test_an_upgrade_goes_only_to_the_version_that_was_checked(setup: Setup) -> None:
    """The step checked version 2 (its purchase, its evaluation); if version 3 was approved in
    the meantime, the upgrade is refused rather than installing 3 unchecked."""
    setup.new_version()
    v2 = Listing.objects.get().current_version
    assert v2 is not None
    setup.new_version()
    with pytest.raises(Conflict) as refused:
        market.upgrade(access=setup.bravo, install=setup.install, expected_version_id=v2.pk)
    assert "version 3" in refused.value.message
    assert setup.installed().version.number == 1
    # the sweep starts over for version 3, and checks it (here: nothing to check)
    auto_upgrade.auto_upgrade_set(
        access=setup.bravo, install=setup.install, enabled=True, suite_id=None
    )
    assert auto_upgrade.auto_upgrade_sweep() == 1
    assert setup.installed().version.number == 3


def test_a_version_approved_after_the_evaluation_passed_is_evaluated_too(setup: Setup) -> None:
    _gated_and_evaluating(setup)
    v2_trial = _trial(setup)
    passed = setup.run_evaluation()
    assert passed.status == Evaluation.Status.PASSED
    setup.new_version()  # version 3 approved before the sweep upgrades to 2
    assert auto_upgrade.auto_upgrade_sweep() == 0
    install = setup.installed()
    assert install.version.number == 1  # neither 2 (superseded) nor 3 (unchecked)
    assert install.auto_state == "evaluating"
    assert install.auto_note.startswith("Evaluating version 3 (evaluation #")
    with schema_context(setup.bravo.workspace.schema_name):
        v2_trial.refresh_from_db()
        assert v2_trial.archived_at is not None
        assert Evaluation.objects.exclude(pk=passed.pk).get().finished is False
