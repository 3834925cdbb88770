"""Test-wide settings. Hypothesis: no per-example deadline (a shared 2-core machine stalls
now and then), and on CI (CI=true) a derandomized run, so a red build is reproducible; local
runs keep exploring new examples (and remember failures in .hypothesis/)."""

import os

from hypothesis import settings

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
