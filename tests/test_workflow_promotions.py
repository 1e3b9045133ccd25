"""schedule.yml's `promotions` job, run for real with the drift job's harness (tests/test_workflow_drift.py): the
real `stamp promote --due --apply`, a bare git repository as origin and a stub `gh` (docs/rollout.md, Promotion
by pull request)."""

from __future__ import annotations

import yaml

from test_workflow_drift import World, checkout, run_job, seed
from test_workflow_drift import world as world  # the fixture: an origin, a stub gh, moto

JOB = "promotions"
CHANNELS = "  channels: {candidate: {}, stable: {after: candidate, soak_days: 7}}\n"
PROMOTE_STEP = "stamp promote --due --apply"
PR_STEP = "open or refresh the promotions pull request"


def channels_of_base(catalog_text: str) -> dict[str, str]:
    data = yaml.safe_load(catalog_text)
    (release,) = data["releases"]["base"]
    channels = release.get("channels", {})
    assert isinstance(channels, dict)
    return channels


def test_a_release_that_soaked_is_promoted_by_one_pull_request(world: World) -> None:
    # base 1 entered candidate weeks before this test's real clock: past its 7 days of soak.
    seed(world, defaults=CHANNELS, release_extra='      channels: {candidate: "2026-11-01T10:00:00Z"}\n')
    work = checkout(world, "run-1")

    job = run_job(world, work, JOB)

    assert job.ok, job.out
    assert [s.name for s in job.ran] == [PROMOTE_STEP, PR_STEP]
    promoted = channels_of_base(world.file_at("stamp/promotions", "catalog.yaml"))
    assert set(promoted) == {"candidate", "stable"}
    assert channels_of_base(world.file_at("main", "catalog.yaml")) == {"candidate": "2026-11-01T10:00:00Z"}
    assert world.rev("stamp/promotions^") == world.rev("main"), "one commit on main"
    calls = world.gh_calls()
    assert [c["args"][:2] for c in calls] == [["pr", "list"], ["pr", "create"]]
    assert "base v1" in calls[1]["body"] and "stable" in calls[1]["body"]
    assert "base v1" in job.summary

    # The next day, with the pull request still open, the same promotion is proposed again in place.
    again = run_job(world, checkout(world, "run-2"), JOB)
    assert again.ok, again.out
    assert [c["args"][:2] for c in world.gh_calls()[2:]] == [["pr", "list"], ["pr", "edit"]]
    assert [p["state"] for p in world.prs()] == ["open"]


def test_nothing_due_opens_nothing(world: World) -> None:
    # A release recorded before the catalog had channels never entered the first one: nothing is due for it.
    seed(world, defaults=CHANNELS)
    before = world.refs()

    job = run_job(world, checkout(world, "run-1"), JOB)

    assert job.ok, job.out
    assert [s.name for s in job.ran] == [PROMOTE_STEP]
    assert world.refs() == before
    assert world.gh_calls() == []
