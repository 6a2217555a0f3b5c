"""The labeling queue: serve the next item, hold, renew, skip and release leases, submit and undo labels."""
# Every write that leases or labels an item locks that item's row first, then re-checks its leases
# and labels with fresh statements: the lock serialises all lease creation per item, so no item is
# leased beyond the project's overlap, nor twice to one expert, whatever the concurrency.
