-- Allocates process ids from the sequence, so that replies can name them
-- before the rows are written. $1: how many.
SELECT nextval('process_id_seq') FROM generate_series(1, $1::int8)
