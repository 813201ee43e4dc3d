"""A greenhouse climate controller: a small JetStream service written with plain nats-py.

It is the worked example of a user platform for qiki-harness (see ../README.md) and knows
nothing about the harness: it takes its NATS URL and state directory from the environment,
consumes commands (``acme.climate.v1.SetTarget``) through its own durable consumer, and
publishes ``acme.climate.v1.Reading``, ``acme.climate.v1.Alarm`` and
``acme.climate.v1.CommandReceipt`` CloudEvents (binary mode) into its own stream.
"""

from greenhouse.service import Config, Greenhouse

__all__ = ["Config", "Greenhouse"]
