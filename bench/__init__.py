"""`make bench`: how fast the outbox dispatches, measured against a loopback SMTP sink."""
