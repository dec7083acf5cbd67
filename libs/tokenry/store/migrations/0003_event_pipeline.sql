-- Event pipeline housekeeping (issue 5): the sweeper deletes published outbox rows older than
-- the stream's max age, oldest first; this partial index finds them without scanning the
-- unpublished tail or the whole table.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
