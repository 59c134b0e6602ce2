"""Broadcast every event to every listener, Mopidy-style, through a group.

Mopidy's core tells each event to its listeners with
``pykka.ActorRegistry.get_by_class(CoreListener)``: a scan of every actor in
the process, under a lock, on every event. Here listeners join the group
``("core", "listeners")`` instead, and the core sends with
``registry.dispatch("core", "listeners", event)``: one read of the group's
member list, then a ``tell`` per member.

* Listeners join as they are started (``start_listener`` returns once the
  listener is a member, so no event is missed) and leave by dying: a
  listener that crashes is out of the group before Pykka reports it
  stopped, so the next event is not sent to it.
* ``registry.ask_all`` then collects what every listener saw, in join order,
  with one deadline for all of them.

Run: python examples/event_listeners.py
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import pykka

from pykka_registry import Registry

GROUP = ("core", "listeners")


@dataclass(frozen=True)
class CoreEvent:
    name: str
    data: Any = None


class Listener(pykka.ThreadingActor):
    """Remembers the events it is interested in."""

    def __init__(self, label: str, wants: tuple[str, ...]) -> None:
        super().__init__()
        self.label = label
        self.wants = wants
        self.seen: list[str] = []

    def on_receive(self, message: object) -> object:
        if isinstance(message, CoreEvent):
            if message.name == "volume_changed" and message.data > 100 and self.label == "mixer":
                raise ValueError(f"{self.label}: volume {message.data} out of range")
            if message.name in self.wants:
                self.seen.append(f"{message.name}:{message.data}")
            return None
        if message == "seen":
            return list(self.seen)
        raise ValueError(f"{self.label}: unknown message {message!r}")


def start_listener(registry: Registry, label: str, wants: tuple[str, ...]) -> Any:
    ref = Listener.start(label, wants)
    registry.join(*GROUP, ref, {"label": label})
    return ref


def main() -> int:
    with Registry.start() as registry:
        listeners = [
            start_listener(registry, "scrobbler", ("track_playback_started",)),
            start_listener(registry, "mixer", ("volume_changed",)),
            start_listener(registry, "websocket", ("track_playback_started", "volume_changed")),
        ]
        try:
            print("listeners:", [md["label"] for _, md in registry.members_with_metadata(*GROUP)])
            sent = registry.dispatch(*GROUP, CoreEvent("track_playback_started", "song-1"))
            print("track_playback_started sent to", sent)
            registry.dispatch(*GROUP, CoreEvent("volume_changed", 80))
            # The mixer crashes on this one: it leaves the group as it dies.
            registry.dispatch(*GROUP, CoreEvent("volume_changed", 120))
            assert listeners[1].actor_stopped.wait(5), "the mixer should have crashed"
            print("after the mixer crashed:", registry.count_members(*GROUP), "listeners")
            assert registry.count_members(*GROUP) == 2  # no sync() needed
            sent = registry.dispatch(*GROUP, CoreEvent("track_playback_started", "song-2"))
            print("track_playback_started sent to", sent)
            assert sent == 2
            answers = dict(registry.ask_all(*GROUP, "seen", timeout=5))
            for ref, md in registry.members_with_metadata(*GROUP):
                print(f"{md['label']} saw {answers[ref]}")
            assert answers[listeners[0]] == [
                "track_playback_started:song-1", "track_playback_started:song-2"]
            assert answers[listeners[2]] == [
                "track_playback_started:song-1", "volume_changed:80",
                "volume_changed:120", "track_playback_started:song-2"]
        finally:
            for ref in listeners:
                ref.stop()
    leftovers = pykka.ActorRegistry.get_all()
    print("actors still running:", len(leftovers))
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
