-- The lane a request came through ('interactive' or 'bulk'), for
-- `procinst request show`. Rows written before lanes existed keep NULL.
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE request_log ADD COLUMN lane text;
