"""Steps a person can follow while a slow thing runs (rich): a spinner with what is going on,
then one line with how long it took.

::

    steps = Steps(console)
    with steps.step("Aave V3: deploy and seed 40 borrowers"):
        ...

On a terminal each step shows a live spinner; elsewhere (a pipe, CI) it prints the step's
name when it starts, so output never goes quiet for long. ``Steps.quiet()`` prints nothing
(for library callers and tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class Steps:
    def __init__(self, console: Console | None = None):
        self.console = console

    @classmethod
    def quiet(cls) -> Steps:
        return cls(None)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        c = self.console
        if c is None:
            yield
            return
        t0 = time.perf_counter()
        if c.is_terminal:
            with c.status(f"{text}…", spinner="dots"):
                yield
        else:
            c.print(f"  … {text}", highlight=False, soft_wrap=True)
            yield
        c.print(f"[green]✓[/] {text} [dim]({time.perf_counter() - t0:.1f} s)[/]", highlight=False,
                soft_wrap=True)
