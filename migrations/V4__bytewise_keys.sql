-- The uniqueness keys compare bytewise. bk-cmdb compares process names,
-- func names, start parameter regexes and request ids as bytes, and so do
-- PostgreSQL's unique indexes under any deterministic collation: the same
-- rows are unique before and after. What changes is the cost of each
-- comparison in those B-trees (a few per index entry inserted or probed):
-- the database's default collation compares through strcoll(), "C" by
-- memcmp(). The indexes are rebuilt; the tables are not rewritten.
ALTER TABLE process
    ALTER COLUMN bk_process_name TYPE text COLLATE "C",
    ALTER COLUMN bk_func_name TYPE text COLLATE "C",
    ALTER COLUMN bk_start_param_regex TYPE text COLLATE "C";
ALTER TABLE request_log ALTER COLUMN request_id TYPE text COLLATE "C";
