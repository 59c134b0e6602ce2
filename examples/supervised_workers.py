"""A small supervised tree of named workers; one crashes and its name is
served by the replacement, through the same `via` handle.

Run: python examples/supervised_workers.py
"""

from __future__ import annotations

import threading

import pykka

from pykka_registry import ChildSpec, Registry, Supervisor


class Worker(pykka.ThreadingActor):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.generation = id(self)

    def on_receive(self, message: object) -> object:
        if message == "crash":
            raise RuntimeError(f"{self.label} crashed on purpose")
        return f"{self.label} (instance {self.generation:x}) handled {message!r}"


def main() -> None:
    with Registry.start() as registry:
        specs = [
            ChildSpec(id=f"worker-{i}", start=lambda i=i: Worker.start(f"worker-{i}"),
                      name=("jobs", f"worker-{i}"), metadata={"pool": "jobs", "index": i})
            for i in range(3)
        ]
        with Supervisor.start(children=specs, strategy="one_for_one", registry=registry) as sup:
            worker_1 = registry.via("jobs", "worker-1")
            print("before:", worker_1.ask("job 1"))

            # Crash worker-1 and wait until its replacement holds the name.
            replaced = threading.Event()
            old_ref = worker_1.resolve()
            subscription = registry.subscribe(
                lambda e: replaced.set()
                if type(e).__name__ == "Registered" and e.actor_ref is not old_ref else None,
                namespace="jobs",
            )
            worker_1.tell("crash")
            if not replaced.wait(5):
                raise SystemExit("the supervisor did not restart worker-1 in time")
            subscription.cancel()

            print("after: ", worker_1.ask("job 2"))
            print("pool:  ", sorted(s for s, _, _ in registry.match("jobs", {"pool": "jobs"})))
            print("restarts per child:", {c.id: c.restarts for c in sup.which_children()})
    print("leftover actors:", pykka.ActorRegistry.get_all())


if __name__ == "__main__":
    main()
