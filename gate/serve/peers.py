"""``workers: N``: a request's first looks shared out among the workers.

One worker computes its verifications one after the other (signature checks, parsing: under its GIL), so a
Deployment with five new images took five times one image's CPU on one core while the others idled
(docs/performance.md). A worker with more verifications in flight than another asks that one to decide
the next image instead; the answer is kept as its own verdict.

Each worker answers on a Unix socket in a directory only the gate's user can enter (the supervisor makes
it with mode 0700), one question per connection: a JSON line ``{"image": "name@sha256:...", "key": [the
digests of policies, data and trust], "seconds": budget}``, answered by a JSON line ``{"decision": {...},
"ttl": seconds}`` or ``{"refused": "why"}``. The answering worker decides as for any request (its
verdict cache, its singleflight), never passes the question on, and refuses when its policies, data or
trust differ from the asker's (a reload reached one of them first). Whatever goes wrong — a refusal, no
answer in time, a malformed answer, a worker being replaced — the asker decides itself: sharing out can
make a decision sooner, never different. Images whose registry credentials come from the Pod's pull
secrets are always decided where the request arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.decision import Decision

if TYPE_CHECKING:
    from gate.serve.workers import Board

log = logging.getLogger(__name__)

MAX_QUESTION = 64 * 1024
MAX_ANSWER = 4 * 1024 * 1024
# The longest an asker waits for another worker before deciding itself (a fraction of its budget, at
# most MAX_WAIT seconds): a worker that stopped answering costs a request time, never its decision.
PATIENCE = 0.5
MAX_WAIT = 5.0

# (image, key, seconds) -> the answer's JSON object
Answerer = Callable[[str, tuple[str, ...], float], Awaitable[dict[str, Any]]]


class Peers:
    """This worker's view of the others: whom to ask, how to ask, and its own socket."""

    def __init__(self, directory: Path, index: int, board: Board) -> None:
        self.directory = directory
        self.index = index
        self.board = board
        self._asked = [0] * board.count  # questions sent to each worker, not yet answered
        self._server: asyncio.AbstractServer | None = None

    def _path(self, index: int) -> str:
        return str(self.directory / f"{index}.sock")

    # -- choosing -----------------------------------------------------------------------------------

    def pick(self) -> int | None:
        """The worker to decide the next first look: another one only if it is computing fewer
        verifications than this one (counting what this one already asked of it); None: this one, which
        counts it as started (:meth:`finish` when done). Called as the verification is set up, so that
        the images of one request are shared out even though none has started yet."""
        from gate.serve.workers import READY

        busy = self.board.busy()
        states = self.board.states()
        mine = busy[self.index]
        load = {
            i: busy[i] + self._asked[i]
            for i in range(self.board.count)
            if i != self.index and states[i] == READY
        }
        other = min(load, key=lambda i: (load[i], i)) if load else None
        if other is not None and load[other] < mine:
            self._asked[other] += 1  # until :meth:`ask` has its answer
            return other
        self.start()
        return None

    def start(self) -> None:
        """A verification starts here (:meth:`pick` says so itself when it picks this worker)."""
        self.board.add_busy(self.index, 1)

    def finish(self) -> None:
        self.board.add_busy(self.index, -1)

    # -- asking -------------------------------------------------------------------------------------

    async def ask(
        self, other: int, image: str, key: tuple[str, ...], seconds: float
    ) -> tuple[Decision, float] | str:
        """Worker ``other``'s decision for ``image`` and how long it may be kept; else why not (the
        caller then decides itself). ``other`` is what :meth:`pick` returned."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(min(MAX_WAIT, seconds * PATIENCE)):
                reader, writer = await asyncio.open_unix_connection(self._path(other), limit=MAX_ANSWER)
                question = {"image": image, "key": list(key), "seconds": seconds}
                writer.write(json.dumps(question).encode() + b"\n")
                line = await reader.readline()
            doc = json.loads(line)
            if not isinstance(doc, dict):
                return "the answer is not an object"
            if "refused" in doc:
                return f"refused: {doc['refused']}"
            ttl, found = doc.get("ttl"), doc.get("decision")
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not isinstance(found, dict):
                return "the answer has no decision"
            decision = Decision.from_dict(found)
            if decision.image != image:
                return f"the answer is about {decision.image}"
            return decision, float(ttl)
        except TimeoutError:
            return "no answer in time"
        except (OSError, ValueError) as err:  # ValueError: JSON, a line over the limit, a bad decision
            return f"{type(err).__name__}: {err}"
        finally:
            self._asked[other] -= 1
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    # -- answering ----------------------------------------------------------------------------------

    async def serve(self, answer: Answerer) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await reader.readline()
                try:
                    doc = json.loads(line)
                    image, key, seconds = doc["image"], tuple(doc["key"]), float(doc["seconds"])
                    if not isinstance(image, str) or not all(isinstance(k, str) for k in key):
                        raise TypeError("image and key must be strings")
                except (ValueError, KeyError, TypeError) as err:
                    reply: dict[str, Any] = {"refused": f"malformed question: {err}"}
                else:
                    reply = await answer(image, key, seconds)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
            except Exception:  # one bad exchange must not take the listener down
                log.exception("answering another worker failed")
            finally:
                writer.close()

        path = self._path(self.index)
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()  # a replaced worker's socket
        self._server = await asyncio.start_unix_server(handle, path=path, limit=MAX_QUESTION)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
