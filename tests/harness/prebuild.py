"""Slow prerequisites (Go-built binaries, images) built once, before the first test.

The tests that need a prerequisite are marked, so that deselecting the mark leaves out all
of them. A ``pytest_collection_finish`` hook builds what the collected tests need, with
output capture off so the build's progress shows. A failed build is kept, and reported by
every test that needs what it builds; the other tests still run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest


class PreBuild:
    """One prerequisite: which tests need it (marked ``marker``), its build, and the build's
    error (of type ``error``) if it failed."""

    def __init__(
        self,
        needed_by: Callable[[pytest.Item], bool],
        marker: pytest.MarkDecorator,
        error: type[Exception],
    ) -> None:
        self.needed_by = needed_by
        self.marker = marker
        self.error = error
        self._failure = pytest.StashKey[str]()

    def mark(self, items: list[pytest.Item]) -> None:
        """Marks every test that needs the prerequisite and is not marked yet."""
        for item in items:
            if self.needed_by(item) and item.get_closest_marker(self.marker.name) is None:
                item.add_marker(self.marker)

    def needed(self, session: pytest.Session) -> bool:
        """Whether the session runs (not only collects) a test that needs the prerequisite."""
        if session.config.option.collectonly:
            return False
        return any(self.needed_by(item) for item in session.items)

    def run(self, session: pytest.Session, build: Callable[[], object]) -> None:
        capture = session.config.pluginmanager.getplugin("capturemanager")
        try:
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    build()
            else:
                build()
        except self.error as exc:
            session.config.stash[self._failure] = str(exc)

    def raise_failure(self, config: pytest.Config) -> None:
        """For a test that needs the prerequisite: the build's error, if it failed."""
        failure = config.stash.get(self._failure, None)
        if failure is not None:
            raise self.error(failure)
