"""precompute(): every task image is registered once; failures are counted, not fatal."""

from __future__ import annotations

from backend.api.priority import Priority
from sam_plugin.image_fetcher import TaskImageFetcher
from sam_plugin.precompute import precompute
from tests.sam_plugin.fakes import LS_URL, FakeSession, ScriptedSamClient, png_bytes, public_resolver


def test_every_task_image_is_added_and_bad_tasks_are_reported(
    sam_client: ScriptedSamClient, fake_session: FakeSession
) -> None:
    for i in range(3):
        fake_session.add(f"{LS_URL}/data/upload/1/{i}.png", png_bytes(20, 10, seed=i))
    fetcher = TaskImageFetcher(
        label_studio_url=LS_URL, api_key="t", resolver=public_resolver, session=fake_session
    )  # type: ignore[arg-type]
    tasks = [{"id": i, "data": {"image": f"/data/upload/1/{i}.png"}} for i in range(3)]
    tasks += [{"id": 9, "data": {"image": "file:///etc/passwd"}}, {"id": 10, "data": {}}]
    report = precompute(tasks, image_key="image", client=sam_client, fetcher=fetcher, progress=False)
    assert (report.done, report.failed) == (3, 2)
    assert len(set(sam_client.added)) == 3
    assert set(sam_client.priorities) == {Priority.BULK}, "precomputing waits behind annotators' clicks"
    assert [task_id for task_id, _ in report.errors or []] == [9, 10]
