"""prune_images over a stand-in engine: which images are superseded, the newest kept per
kind (and NATS version), children before parents, in-use ones left, errors collected."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import requests
from docker.errors import APIError

from harness.containers.images import _created_key, prune_images


def _api_error(status: int, text: str) -> APIError:
    response = requests.Response()
    response.status_code, response.reason, response.url = status, text, "http://engine/images"
    return APIError(text, response=response)


def _image(tag: str, kind: str, created: str, **labels: str) -> Any:
    return SimpleNamespace(id=f"sha256:{tag}", short_id=tag[:12], tags=[tag],
                           labels={"qiki-harness.image": kind, **labels},
                           attrs={"Created": created})


class Engine:
    """Images with their creation times; ``parents`` maps an image to the one built on it;
    ``used`` images have a container."""

    def __init__(self, images: list[Any], parents: dict[str, str], used: set[str],
                 broken: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.store = {i.id: i for i in images}
        self.parents, self.used, self.broken = parents, used, broken
        self.images = self
        self.removed: list[str] = []

    def list(self, filters: dict[str, str]) -> list[Any]:
        return [i for i in self.store.values() if filters["label"] in i.labels]

    def remove(self, image_id: str, noprune: bool = False) -> None:
        img = self.store.get(image_id)
        if img is None:
            raise _api_error(404, "gone")
        if image_id in self.broken:
            raise _api_error(500, "engine error")
        child = self.parents.get(image_id)
        if image_id in self.used or (child is not None and child in self.store):
            raise _api_error(409, "conflict")
        del self.store[image_id]
        self.removed.append(img.tags[0])

    def close(self) -> None:
        pass


def test_created_times_sort_as_times_not_text() -> None:
    times = ["2026-11-28T01:05:39.5Z", "2026-11-28T01:05:39.50001Z", "2026-11-28T01:05:39Z",
             "2026-11-28T01:05:40.000000001Z"]
    ordered = sorted(times, key=lambda t: _created_key(SimpleNamespace(attrs={"Created": t})))
    assert ordered == ["2026-11-28T01:05:39Z", "2026-11-28T01:05:39.5Z",
                       "2026-11-28T01:05:39.50001Z", "2026-11-28T01:05:40.000000001Z"]


def test_newest_of_each_kind_stays_children_go_before_parents() -> None:
    s_old = _image("services:old", "services", "2026-11-28T00:00:01.5Z")
    s_new = _image("services:new", "services", "2026-11-28T00:00:01.50001Z")
    e_old = _image("user-echo:old", "user-echo", "2026-11-28T00:00:02Z")
    e_new = _image("user-echo:new", "user-echo", "2026-11-28T00:00:03Z")
    e_used = _image("user-echo:used", "user-echo", "2026-11-28T00:00:00Z")
    n212 = _image("nats:2.12.1", "nats", "2026-11-01T00:00:00Z",
                  **{"qiki-harness.nats-version": "2.12.1"})
    n215 = _image("nats:2.15.1", "nats", "2026-11-02T00:00:00Z",
                  **{"qiki-harness.nats-version": "2.15.1"})
    # the old services image is the parent of the old echo image (listed before it)
    engine = Engine([s_old, s_new, e_used, e_old, e_new, n212, n215],
                    parents={s_old.id: e_old.id}, used={e_used.id})
    report = prune_images(client=engine)
    assert sorted(report.kept) == ["nats:2.12.1", "nats:2.15.1", "services:new",
                                   "user-echo:new"]
    assert sorted(report.removed) == ["services:old", "user-echo:old"]
    assert engine.removed.index("user-echo:old") < engine.removed.index("services:old")
    assert report.in_use == ["user-echo:used"] and report.errors == {}


def test_only_the_named_kinds_and_errors_are_collected() -> None:
    a = _image("user-a:1", "user-a", "2026-11-28T00:00:01Z")
    b = _image("user-a:2", "user-a", "2026-11-28T00:00:02Z")
    other = _image("user-b:1", "user-b", "2026-11-28T00:00:01Z")
    other2 = _image("user-b:2", "user-b", "2026-11-28T00:00:02Z")
    engine = Engine([a, b, other, other2], parents={}, used=set(), broken={a.id})
    report = prune_images(["user-a"], client=engine)
    assert report.removed == [] and report.kept == ["user-a:2"]
    assert list(report.errors) == ["user-a:1"] and "engine error" in report.errors["user-a:1"]
    assert set(engine.store) == {a.id, b.id, other.id, other2.id}  # user-b untouched
