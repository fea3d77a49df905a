"""Kafka helpers on aiokafka: a record producer and an at-least-once consumer loop."""

from switchboard.common.kafka.consumer import ConsumerLoop, Message, RecordHandler
from switchboard.common.kafka.producer import BrokerUnavailable, RawRecord, RecordProducer, RecordTooLarge

__all__ = [
    "BrokerUnavailable",
    "ConsumerLoop",
    "Message",
    "RawRecord",
    "RecordHandler",
    "RecordProducer",
    "RecordTooLarge",
]
