"""The ``[log]`` table of the config: level and format, validated with the rest.

```toml
[log]
level = "info"      # debug | info | warning | error
format = "auto"     # json | console | auto (JSON lines unless stderr is a terminal)
```

``--log-level`` and ``--log-format`` on the command line win over these.
"""

from __future__ import annotations

from typing import Literal

from keeper.config_types import _Model

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console", "auto")


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console", "auto"] = "auto"
