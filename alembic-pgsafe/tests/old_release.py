"""The release still serving: a writer that knows only the old schema, inserting throughout.

A deploy migrates while the previous release keeps serving, and that release goes on until
the new one replaces it. It inserts rows without the columns it does not know, through
prepared statements (asyncpg's cache, as the application has it). No migration may make one
of its writes fail: before, during or after.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import URL, Executable
from sqlalchemy.ext.asyncio import create_async_engine


@dataclass
class WriterReport:
    writes: int = 0
    failures: list[str] = field(default_factory=list)
    longest_write: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.writes} writes, {len(self.failures)} failed, longest"
            f" {self.longest_write * 1000:.0f} ms; first failures: {self.failures[:3]}"
        )


@asynccontextmanager
async def old_release_writer(
    url: URL, insert: Callable[[int], Executable], *, interval: float = 0.01
) -> AsyncIterator[WriterReport]:
    """Insert ``insert(n)`` every ``interval`` seconds until the block ends, and after it once.

    Yields once the first write went through, so that the block starts with a working writer.
    """
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    report = WriterReport()
    stop = asyncio.Event()

    async def write(number: int) -> None:
        started = time.monotonic()
        try:
            async with engine.begin() as connection:
                await connection.execute(insert(number))
            report.writes += 1
        except Exception as exc:  # every failure is what the test counts
            report.failures.append(f"{type(exc).__name__}: {exc}"[:400])
        report.longest_write = max(report.longest_write, time.monotonic() - started)

    async def keep_writing() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            await write(number)
            await asyncio.sleep(interval)

    await write(0)
    task = asyncio.create_task(keep_writing())
    try:
        yield report
    finally:
        stop.set()
        await task
        await write(-1)  # after the migration: the old release must still be able to insert
        await engine.dispose()
