"""Structured logging for the whole process (structlog over the stdlib)."""

from __future__ import annotations

import logging
import sys

import structlog


def setup_logging(level: str = "info", json: bool = False) -> None:
    """Route stdlib and structlog records through one renderer on stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in (
        "uvicorn.access",
        "aiortc",
        "aioice",
        "botocore",
        "urllib3",
        "alembic.runtime.plugins",
        "httpx",  # one INFO line per request: the demo's sensor pusher posts every 5 s
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Each retry is a warning there; the object store reports the final failure itself.
    logging.getLogger("urllib3.connectionpool").setLevel(max(logging.ERROR, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def worth_logging(count: int) -> bool:
    """True at the 1st, 10th, 100th… occurrence: a flood of refusals shows, in a few lines."""
    text = str(count)
    return text[0] == "1" and text[1:] == "0" * (len(text) - 1)
