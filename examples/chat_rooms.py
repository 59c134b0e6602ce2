"""A chat service: one named actor per room, created on demand, supervised.

* Each room is a ``Room`` actor registered as ``("rooms", <room>)``. Rooms are
  opened on demand with ``registry.get_or_start`` (three users opening the
  same room at once get one room) and run under a ``Supervisor``, so a room
  that crashes is restarted under the same name.
* Users are actors registered as ``("users", <user>)``. Users talk to rooms,
  and rooms deliver posts to users, through ``via`` names: nobody holds an
  actor ref that a restart could make stale.
* A room keeps its members and history in a store outside the actor (a dict
  standing in for a database), so its replacement carries on where it was.

Run: python examples/chat_rooms.py
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import pykka

from pykka_registry import (
    ChildSpec,
    NotRegisteredError,
    Registry,
    Supervisor,
    monitor,
)

# -- messages ----------------------------------------------------------------------


@dataclass(frozen=True)
class Join:
    user: str


@dataclass(frozen=True)
class Post:
    user: str
    text: str


@dataclass(frozen=True)
class Delivery:
    room: str
    user: str
    text: str


HISTORY = "history"
INBOX = "inbox"


# -- the store a room's state outlives the room actor in ------------------------------


class RoomStore:
    """Members and history per room (thread-safe; a database in real life)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rooms: dict[str, tuple[list[str], list[str]]] = {}

    def load(self, room: str) -> tuple[list[str], list[str]]:
        with self._lock:
            members, history = self._rooms.get(room, ([], []))
            return list(members), list(history)

    def save(self, room: str, members: list[str], history: list[str]) -> None:
        with self._lock:
            self._rooms[room] = (list(members), list(history))


# -- actors ------------------------------------------------------------------------


class Room(pykka.ThreadingActor):
    def __init__(self, name: str, store: RoomStore, registry: Registry) -> None:
        super().__init__()
        self.name = name
        self.store = store
        self.registry = registry
        self.members: list[str] = []
        self.history: list[str] = []

    def on_start(self) -> None:
        self.members, self.history = self.store.load(self.name)

    def on_receive(self, message: object) -> object:
        if isinstance(message, Join):
            if message.user not in self.members:
                self.members.append(message.user)
                self.store.save(self.name, self.members, self.history)
            return list(self.history)
        if isinstance(message, Post):
            if message.text.startswith("/crash"):
                # A bug on purpose: the supervisor will restart the room.
                raise RuntimeError(f"room {self.name} choked on {message.text!r}")
            line = f"{message.user}: {message.text}"
            self.history.append(line)
            self.store.save(self.name, self.members, self.history)
            for member in self.members:
                if member == message.user:
                    continue
                try:
                    self.registry.via("users", member).tell(
                        Delivery(self.name, message.user, message.text)
                    )
                except NotRegisteredError:
                    pass  # the user has gone; the room carries on
            return None
        if message == HISTORY:
            return list(self.history)
        raise ValueError(f"room {self.name}: unknown message {message!r}")


class User(pykka.ThreadingActor):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.inbox: list[str] = []

    def on_receive(self, message: object) -> object:
        if isinstance(message, Delivery):
            self.inbox.append(f"[{message.room}] {message.user}: {message.text}")
            return None
        if message == INBOX:
            return list(self.inbox)
        raise ValueError(f"user {self.name}: unknown message {message!r}")


# -- the service ---------------------------------------------------------------------


class ChatService:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = RoomStore()
        self.rooms = Supervisor.start(strategy="one_for_one", max_restarts=5, max_seconds=10,
                                      registry=registry, name="rooms")
        self.opened: list[str] = []  # how many times a room actor was started on demand

    def open_room(self, room: str) -> pykka.ActorRef[object]:
        """The room's actor; started (under the supervisor) if nobody holds the name."""
        metadata = {"kind": "room", "topic": room}

        def start() -> pykka.ActorRef[object]:
            self.opened.append(room)
            return self.rooms.start_child(ChildSpec(
                id=room,
                start=lambda: Room.start(room, self.store, self.registry),
                name=("rooms", room),
                metadata=metadata,
            ))

        return self.registry.get_or_start("rooms", room, start, metadata)

    def add_user(self, user: str) -> None:
        self.registry.register("users", user, User.start(user), {"kind": "user"})

    def join(self, user: str, room: str) -> list[str]:
        self.open_room(room)
        return self.registry.via("rooms", room).ask(Join(user))

    def post(self, user: str, room: str, text: str) -> None:
        self.registry.via("rooms", room).tell(Post(user, text))

    def inbox(self, user: str) -> list[str]:
        return self.registry.via("users", user).ask(INBOX)

    def stop(self) -> None:
        self.rooms.stop()
        for user in list(self.registry.list_services("users")):
            ref = self.registry.lookup("users", user)
            if ref is not None:
                ref.stop()


def main() -> int:
    with Registry.start() as registry:
        chat = ChatService(registry)
        try:
            for user in ("alice", "bob", "carol"):
                chat.add_user(user)

            # Three users open the same room at the same moment: one room.
            barrier = threading.Barrier(3)
            refs: list[object] = []

            def open_python() -> None:
                barrier.wait()
                refs.append(chat.open_room("python"))

            openers = [threading.Thread(target=open_python) for _ in range(3)]
            for thread in openers:
                thread.start()
            for thread in openers:
                thread.join()
            assert len(set(refs)) == 1 and chat.opened == ["python"], (refs, chat.opened)
            print("opened on demand:", chat.opened)

            chat.join("alice", "python")
            chat.join("bob", "python")
            chat.join("carol", "rust")  # opened on demand too
            chat.post("alice", "python", "anyone tried 3.13 yet?")
            chat.post("bob", "python", "yes, free-threaded even")
            chat.post("carol", "rust", "hello? anyone?")

            # A room crashes: the supervisor restarts it under the same name,
            # and the replacement reloads members and history from the store.
            room = registry.via("rooms", "python")
            old = room.resolve()
            down = threading.Event()
            monitor(old, lambda event: (print("room down:", repr(event.reason)), down.set()))
            chat.post("bob", "python", "/crash please")
            assert down.wait(5), "the room did not crash"
            new = registry.await_name("rooms", "python", timeout=5, replacing=old)
            assert new != old
            print("room restarted; history kept:", room.ask(HISTORY))

            chat.post("alice", "python", "welcome back, room")
            room.ask(HISTORY)  # posts above are handled (and delivered) before this answer

            print("bob's inbox:  ", chat.inbox("bob"))
            print("alice's inbox:", chat.inbox("alice"))
            # A room delivers a post to its other members, never to the author.
            print("carol's inbox:", chat.inbox("carol"),
                  "(carol is alone in 'rust': her own post is not sent back to her)")
            assert chat.inbox("bob") == [
                "[python] alice: anyone tried 3.13 yet?",
                "[python] alice: welcome back, room",
            ]
            rooms = sorted(s for s, _, _ in registry.match("rooms", {"kind": "room"}))
            print("rooms:", rooms)
            print("restarts:", {c.id: c.restarts for c in chat.rooms.which_children()})
        finally:
            chat.stop()
    leftovers = pykka.ActorRegistry.get_all()
    print("actors still running:", len(leftovers))
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
