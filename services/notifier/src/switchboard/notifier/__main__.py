"""``python -m switchboard.notifier`` / ``switchboard-notifier``: run the notifier service."""

from __future__ import annotations

from switchboard.common.runtime import run_service
from switchboard.notifier.app import build_app
from switchboard.notifier.settings import NotifierSettings


def main() -> None:
    run_service(build_app(NotifierSettings()))


if __name__ == "__main__":
    main()
