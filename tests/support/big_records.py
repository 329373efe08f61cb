"""Records bigger than a topic takes: the rows and the small topic they are refused by."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic

SMALL = 20_000
"""The topic's ``max.message.bytes`` at first; the big row's record is about 3 times that."""


BIG_BODY = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, %s) g)"
"""A text about 3 x ``SMALL`` long, of md5 hex digits, which PostgreSQL's compression cannot
shrink much either (its parameter: ``BIG_ROWS``)."""


BIG_ROWS = SMALL * 3 // 32


def small_topic(kafka: str, topic: str) -> KafkaAdminClient:
    """``topic``, made to refuse records over ``SMALL`` bytes; the admin client that made it."""
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(SMALL)})])
    return admin
