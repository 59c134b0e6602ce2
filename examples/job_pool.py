"""A job pool: workers advertise capabilities as metadata and join one group
per capability; the pool picks a worker with ``group_via`` and notices a
worker's death through registry events.

* Each worker registers as ``("workers", <name>)`` with metadata such as
  ``{"caps": ["ocr", "upscale"], "gpu": True}`` on an ``IndexedBackend``, so
  ``registry.match("workers", {"gpu": True})`` is answered from an index, and
  joins the group ``("caps", <capability>)`` for each capability.
* The pool sends each job through ``registry.group_via("caps", kind)``: round
  robin over the live workers that have the capability (a dead worker has
  left every group before Pykka reports it stopped, so it is never picked).
* The pool subscribes to the registry's events. When a worker crashes, its
  ``Unregistered`` event (reason ``"crashed"``, with the exception) reaches the
  pool, which starts a replacement under the same name and hands the dead
  worker's unfinished jobs to the workers still standing.

Run: python examples/job_pool.py
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, replace
from typing import Any, Optional

import pykka

from pykka_registry import IndexedBackend, NotRegisteredError, Registry, Unregistered

NAMESPACE = "workers"
CAPS = "caps"  # the groups: one per capability

WORKERS = {
    "cpu-1": {"caps": ["resize", "thumbnail"], "gpu": False},
    "cpu-2": {"caps": ["resize", "ocr"], "gpu": False},
    "gpu-1": {"caps": ["ocr", "upscale"], "gpu": True},
}


@dataclass(frozen=True)
class Job:
    id: int
    kind: str  # the capability it needs
    payload: str
    attempt: int = 1


@dataclass(frozen=True)
class Done:
    job: Job
    worker: str
    result: str


@dataclass(frozen=True)
class WorkerDown:
    worker: str
    actor_ref: Any
    reason: Optional[BaseException]


class Worker(pykka.ThreadingActor):
    def __init__(self, name: str, pool: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.name = name
        self.pool = pool

    def on_receive(self, message: object) -> object:
        if isinstance(message, Job):
            if message.payload.startswith("corrupt") and message.attempt == 1:
                # A driver bug on purpose: the first attempt kills the worker.
                raise RuntimeError(f"{self.name}: driver fault on {message.payload}")
            result = f"{message.kind}({message.payload})"
            self.pool.tell(Done(message, self.name, result))
            return None
        raise ValueError(f"{self.name}: unknown message {message!r}")


def start_worker(registry: Registry, name: str, pool: pykka.ActorRef[Any]) -> None:
    ref = Worker.start(name, pool)
    registry.register(NAMESPACE, name, ref, WORKERS[name])
    for capability in WORKERS[name]["caps"]:  # type: ignore[attr-defined]
        registry.join(CAPS, capability, ref, {"name": name})


class Pool(pykka.ThreadingActor):
    """Dispatches jobs; every method runs in the pool's own thread."""

    def __init__(self, registry: Registry, expected: int, all_done: threading.Event) -> None:
        super().__init__()
        self.registry = registry
        self.expected = expected
        self.all_done = all_done
        self.in_flight: dict[int, tuple[str, Job]] = {}  # job id -> (worker, job)
        self.waiting: list[Job] = []  # jobs no live worker can take yet
        self.results: dict[int, tuple[str, str]] = {}  # job id -> (worker, result)
        self.log: list[str] = []
        self.handles: dict[str, Any] = {}  # capability -> GroupVia

    def submit(self, job: Job) -> str:
        # One handle per capability, kept: its round robin goes on across calls.
        via = self.handles.get(job.kind)
        if via is None:
            via = self.handles[job.kind] = self.registry.group_via(CAPS, job.kind)
        for _attempt in range(len(WORKERS)):
            try:
                ref = via.resolve()
                ref.tell(job)
            except NotRegisteredError:
                break  # no live worker can do it (yet)
            except pykka.ActorDeadError:
                continue  # it died just now; its WorkerDown is on the way
            keys = self.registry.keys_of(ref)
            worker = str(keys[0][1]) if keys else "?"
            self.in_flight[job.id] = (worker, job)
            return worker
        self.waiting.append(job)  # sent when a capable worker (re)appears
        return "waiting"

    def on_receive(self, message: object) -> object:
        if isinstance(message, Done):
            self.in_flight.pop(message.job.id, None)
            self.results[message.job.id] = (message.worker, message.result)
            if len(self.results) == self.expected:
                self.all_done.set()
            return None
        if isinstance(message, WorkerDown):
            self._worker_down(message)
            return None
        raise ValueError(f"pool: unknown message {message!r}")

    def _worker_down(self, down: WorkerDown) -> None:
        self.log.append(f"{down.worker} died of {down.reason!r}")
        start_worker(self.registry, down.worker, self.actor_ref)  # the name is free at once
        self.log.append(f"{down.worker} replaced")
        orphans = [job for worker, job in self.in_flight.values() if worker == down.worker]
        for job in orphans:
            del self.in_flight[job.id]
            retry = replace(job, attempt=job.attempt + 1)
            self.log.append(f"job {job.id} re-sent to {self.submit(retry)}")
        waiting, self.waiting = self.waiting, []
        for job in waiting:
            self.log.append(f"job {job.id} (waiting) sent to {self.submit(job)}")

    def report(self) -> tuple[dict[int, tuple[str, str]], list[str]]:
        return dict(self.results), list(self.log)


def main() -> int:
    jobs = [
        Job(1, "resize", "cat.jpg"),
        Job(2, "ocr", "invoice.pdf"),
        Job(3, "upscale", "corrupt-scan.png"),  # kills gpu-1 on its first attempt
        Job(4, "thumbnail", "dog.jpg"),
        Job(5, "ocr", "letter.pdf"),
        Job(6, "resize", "bird.jpg"),
    ]
    all_done = threading.Event()
    with Registry.start(backend=IndexedBackend) as registry:
        pool_ref = Pool.start(registry, len(jobs), all_done)
        pool = pool_ref.proxy()
        for name in WORKERS:
            start_worker(registry, name, pool_ref)

        def on_event(event: object) -> None:
            # Runs in the registry's event thread: hand over to the pool, never block.
            if isinstance(event, Unregistered) and event.reason.crashed:
                pool_ref.tell(WorkerDown(event.service, event.actor_ref, event.reason.exception))

        subscription = registry.subscribe(on_event, namespace=NAMESPACE)
        try:
            gpus = [s for s, _, _ in registry.match(NAMESPACE, {"gpu": True})]
            print("gpu workers:", gpus)
            for job in jobs:
                print(f"job {job.id} ({job.kind}) -> {pool.submit(job).get(timeout=5)}")
            if not all_done.wait(10):
                raise SystemExit("the pool did not finish in time")
            results, log = pool.report().get(timeout=5)
            for line in log:
                print("pool:", line)
            for job_id in sorted(results):
                worker, result = results[job_id]
                print(f"job {job_id}: {result} by {worker}")
            assert set(results) == {job.id for job in jobs}
            assert results[3] == ("gpu-1", "upscale(corrupt-scan.png)")  # done by the replacement
            assert any("gpu-1 died" in line for line in log)
        finally:
            subscription.cancel()
            for name in list(registry.list_services(NAMESPACE)):
                ref = registry.lookup(NAMESPACE, name)
                if ref is not None:
                    ref.stop()
            pool_ref.stop()
    leftovers = pykka.ActorRegistry.get_all()
    print("actors still running:", len(leftovers))
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
