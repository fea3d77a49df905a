"""A minimal service on the shared runtime, run as a real process by the tests.

It consumes ``inbound.v1`` and, for every record, appends ``partition:offset`` to the file
named by ``RELAY_OUT`` and writes a routing-log entry. ``RELAY_HANG_BEFORE_COMMIT=1`` makes
it go on processing but never commit (so a test can kill it between processing and commit,
however the records happen to be split into batches).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from switchboard.common.events import InboundMessage, RecordCodec, RoutingDecision, RoutingLogEntry
from switchboard.common.kafka.consumer import ConsumerLoop, Message
from switchboard.common.runtime import KAFKA, TOPICS, ConsumerSpec, add_kafka, create_app, run_service
from switchboard.common.settings import ServiceSettings


def main() -> None:
    settings = ServiceSettings(service_name="relay")
    out_path = os.environ["RELAY_OUT"]
    if os.environ.get("RELAY_HANG_BEFORE_COMMIT") == "1":

        async def never_commit(self: ConsumerLoop, consumer: object) -> None:
            await self.producer.flush()  # the output is acknowledged; the offsets stay uncommitted

        ConsumerLoop._commit = never_commit  # type: ignore[method-assign]

    app = create_app(settings)

    async def handle(message: Message) -> None:
        assert isinstance(message.record, InboundMessage)
        await asyncio.sleep(float(os.environ.get("RELAY_DELAY", "0")))
        with Path(out_path).open("a") as out:  # noqa: ASYNC230  # a tiny append in a test service
            out.write(f"{message.partition}:{message.offset}\n")
        entry = RoutingLogEntry(
            tenant_id=message.record.tenant_id,
            conversation_id=message.record.provider_message_id,
            decision=RoutingDecision.IGNORED,
            reason="relay test service",
        )
        await app[KAFKA].producer.send_soon(app[TOPICS].routing_log, entry)

    add_kafka(
        app,
        ConsumerSpec(
            name="relay",
            topics=[app[TOPICS].inbound],
            group_id=os.environ["RELAY_GROUP"],
            handler=handle,
            codec=RecordCodec(InboundMessage),
        ),
    )
    run_service(app)


if __name__ == "__main__":
    main()
