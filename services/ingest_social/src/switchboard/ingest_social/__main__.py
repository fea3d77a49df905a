"""``python -m switchboard.ingest_social`` and the ``switchboard-ingest-social`` console script."""

from __future__ import annotations

import sys

from switchboard.common.runtime import run_service
from switchboard.ingest_social.sdk import ConfigError
from switchboard.ingest_social.service import build_app
from switchboard.ingest_social.settings import IngestSocialSettings


def main() -> None:
    settings = IngestSocialSettings()
    try:
        app = build_app(settings)
    except ConfigError as exc:
        print(f"switchboard-ingest-social: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run_service(app)


if __name__ == "__main__":
    main()
