-- The roles of a least-privilege deployment, run by a superuser (or a role
-- with CREATEROLE that owns the database) in procinst's database:
--
--   psql "postgres://admin@db/procinst" -v owner_password="'...'" \
--        -v app_password="'...'" -f deploy/postgres/roles.sql
--
-- procinst_owner owns the schema: `procinst migrate` runs as it, and only
-- it changes the schema. procinst_app is what `procinst run` and every
-- other command use: it reads and writes procinst's tables and takes ids
-- from its sequences, nothing more. Default privileges give procinst_app
-- the same rights on every table and sequence a later migration creates,
-- so an upgrade is `procinst migrate` as the owner, then the new workers.
--
-- The script may run again (it creates only what is missing). Run it once
-- more after the first `procinst migrate`: it then also takes from
-- procinst_app the right to write the migrations' own record, which
-- before it got like every new table. Other names: -v owner=... -v app=...

\if :{?owner}
\else
\set owner procinst_owner
\endif
\if :{?app}
\else
\set app procinst_app
\endif

SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app') \gexec
\if :{?owner_password}
ALTER ROLE :"owner" PASSWORD :owner_password;
\endif
\if :{?app_password}
ALTER ROLE :"app" PASSWORD :app_password;
\endif

SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), :'owner', :'app') \gexec
GRANT CREATE, USAGE ON SCHEMA public TO :"owner";

GRANT USAGE ON SCHEMA public TO :"app";
-- What is there already.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";
-- What later migrations create, as the owner.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app";
-- The migrations' own record: the app reads the version, never writes it.
SELECT format('REVOKE INSERT, UPDATE, DELETE ON refinery_schema_history FROM %I', :'app')
WHERE to_regclass('refinery_schema_history') IS NOT NULL \gexec
