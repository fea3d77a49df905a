"""``python -m switchboard.ingest_email`` / ``switchboard-ingest-email``: run the email ingest service."""

from __future__ import annotations

from switchboard.common.runtime import run_service
from switchboard.ingest_email.app import build_app
from switchboard.ingest_email.settings import IngestEmailSettings


def main() -> None:
    run_service(build_app(IngestEmailSettings()))


if __name__ == "__main__":
    main()
