"""``python -m switchboard.router`` / ``switchboard-router``: run the router service."""

from __future__ import annotations

import sys

from switchboard.common.logging import configure_logging, get_logger
from switchboard.common.runtime import run_service
from switchboard.router.app import build_app
from switchboard.router.rules import RulesError
from switchboard.router.settings import RouterSettings


def main() -> int:
    settings = RouterSettings()
    try:
        app = build_app(settings)
    except RulesError as exc:
        configure_logging(settings.log_level, settings.log_format, service=settings.service_name)
        get_logger(__name__).error(
            "cannot start: the rules file is invalid", problems=[str(issue) for issue in exc.issues]
        )
        return 2
    run_service(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
