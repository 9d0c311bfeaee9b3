"""Imported by a command under test (``--module``): this process gets SIGINT while its Spark session starts.

``SIGNAL_DURING_SPARK_START`` says when: ``context`` as the SparkContext begins to start (before
the JVM is launched), ``session`` once the SparkContext has started, when pyspark has installed its
own SIGINT handler if it was started in the main thread, while the SparkSession is being created.
The signal is real (``os.kill`` of this process); only its timing is pinned, which a test sending it
from outside cannot do.
"""
from __future__ import annotations

import os
import signal
from typing import Any

from pyspark.core.context import SparkContext
from pyspark.sql import SparkSession

WHEN = os.environ.get("SIGNAL_DURING_SPARK_START", "")
_fired: list[str] = []


def _hook(cls: type, method: str) -> None:
    original = getattr(cls, method)

    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _fired:
            _fired.append(WHEN)
            print(f"sending SIGINT during the Spark start ({WHEN})", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    setattr(cls, method, hooked)


if WHEN == "context":
    _hook(SparkContext, "_do_init")
elif WHEN == "session":
    _hook(SparkSession, "__init__")
