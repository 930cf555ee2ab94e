-- Events take their sequence when they are inserted, and the sequencer only publishes how far
-- readers may read (see the outbox module). Numbering afterwards rewrote every event: a second
-- version of the row and new entries in all of its indexes, as much work again as the insert.
-- The insert-order key `seq` had no other use.

-- Whatever is still unnumbered was committed before this migration: number it now.
UPDATE events e SET sequence = s.last + pending.n
FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM events WHERE sequence IS NULL) pending,
     event_sequencer s
WHERE e.seq = pending.seq AND s.id = 1;
UPDATE event_sequencer SET last = GREATEST(last, COALESCE((SELECT max(sequence) FROM events), 0)) WHERE id = 1;

CREATE SEQUENCE events_sequence;
SELECT setval('events_sequence', (SELECT last FROM event_sequencer WHERE id = 1) + 1, false);

ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_sequence_fkey;
-- Takes events_pkey and events_unsequenced with it.
ALTER TABLE events DROP COLUMN seq;
ALTER TABLE events DROP CONSTRAINT events_sequence_key;
ALTER TABLE events ADD PRIMARY KEY (sequence);
ALTER TABLE events ALTER COLUMN sequence SET DEFAULT nextval('events_sequence');
ALTER SEQUENCE events_sequence OWNED BY events.sequence;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_sequence_fkey
    FOREIGN KEY (event_sequence) REFERENCES events (sequence) ON DELETE CASCADE;
