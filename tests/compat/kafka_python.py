"""kafka-python against a Weir broker: admin, an idempotent producer under each codec, and
a consumer reading everything back from explicit offsets and by timestamp.

Run by broker/tests/kafka_python.rs with the interpreter of the venv tests/run makes:
    python kafka_python.py BOOTSTRAP
Prints one line per check; exits non-zero on the first failure.
"""

import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

RECORDS = 500


def main(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("py-events", num_partitions=2, replication_factor=1)])
    described = admin.describe_topics(["py-events"])
    assert len(described[0]["partitions"]) == 2, described
    print("admin: topic created and described")

    sent = {}
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        # kafka-python enables idempotence by default: InitProducerId, then sequenced batches.
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec)
        futures = []
        for i in range(RECORDS):
            key = f"{codec}-{i}".encode()
            futures.append((key, producer.send("py-events", key=key, value=b"v" * 50,
                                               headers=[("codec", str(codec).encode())],
                                               timestamp_ms=1_700_000_000_000 + i)))
        producer.flush()
        for key, future in futures:
            metadata = future.get(timeout=30)
            sent[key] = (metadata.partition, metadata.offset)
        producer.close()
        print(f"produce: {RECORDS} records under {codec}")

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    partitions = [TopicPartition("py-events", p) for p in (0, 1)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    received = {}
    for message in consumer:
        received[message.key] = (message.partition, message.offset)
        assert message.headers[0][0] == "codec", message.headers
        if len(received) == len(sent):
            break
    assert received == sent, f"{len(received)} of {len(sent)} records came back"
    print(f"consume: all {len(sent)} records, at the offsets they were acknowledged with")

    found = consumer.offsets_for_times({partitions[0]: 1_700_000_000_000 + RECORDS - 1})
    assert found[partitions[0]] is not None, found
    print("list offsets: by timestamp")
    admin.delete_topics(["py-events"])
    print("admin: topic deleted")


if __name__ == "__main__":
    main(sys.argv[1])
