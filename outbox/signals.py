"""Signals other apps use to hear about deliveries without outbox importing them.

Both are sent inside the transaction that records the outcome, with `email` the
`OutboundEmail` row; a receiver's writes commit or roll back with that record.
"""

from django.dispatch import Signal

email_sent = Signal()
email_failed = Signal()
