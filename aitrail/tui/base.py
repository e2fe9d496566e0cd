"""What every screen shares: store calls in workers, stale results dropped, one error path."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from ..store.errors import StoreError

if TYPE_CHECKING:
    from .app import AitrailApp
    from .client import StoreClient


class StoreScreen(Screen):
    """A screen that reads the store in thread workers.

    `fetch` runs a store call off the UI thread; when it returns, `done` paints the result,
    unless a newer fetch of the same group started meanwhile (its result would be stale).
    A StoreError becomes `failed` (an inline message), never a crash.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generation: dict[str, int] = {}

    @property
    def aitrail(self) -> AitrailApp:
        return self.app  # type: ignore[return-value]

    @property
    def client(self) -> StoreClient:
        return self.aitrail.client

    def fetch(self, group: str, call: Callable[[StoreClient], Any],
              done: Callable[[Any], None],
              failed: Callable[[str], None] | None = None) -> None:
        gen = self._generation[group] = self._generation.get(group, 0) + 1
        client = self.client

        def deliver(ok: bool, value: Any) -> None:
            if self._generation.get(group) != gen or not self.is_attached:
                return  # a newer query of this group replaced this one
            if ok:
                done(value)
            elif failed is not None:
                failed(value)
            else:
                self.notify(value, title="store", severity="error", timeout=8)

        def work() -> None:
            try:
                value = call(client)
            except StoreError as e:
                self.app.call_from_thread(deliver, False, str(e))
                return
            except Exception as e:  # a bug must show, not kill the responder's session
                self.app.call_from_thread(deliver, False, f"{type(e).__name__}: {e}")
                return
            self.app.call_from_thread(deliver, True, value)

        self.run_worker(work, thread=True, group=group, exit_on_error=False)

    def reopen(self) -> Screen | None:
        """A fresh copy of this screen for forward history (None: not re-openable)."""
        return None
