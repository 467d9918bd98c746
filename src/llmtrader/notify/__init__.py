"""Outbound notifications (Apprise): the outbox rows the store's triggers and the agent write, turned into
short plain-text messages and delivered by a background task that never stands in the way of a cycle."""
