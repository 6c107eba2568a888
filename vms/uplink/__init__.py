"""Provincial uplink: Tables 2, 3 and 4 (spec/alarms.md) through a durable outbox."""
