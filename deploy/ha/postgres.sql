-- The shared run history of HA replicas (docs/operations.md, "Run history in PostgreSQL"):
-- the hub's role and its database. Run once, as PostgreSQL's superuser, on the database server:
--
--   sudo -u postgres psql -v ON_ERROR_STOP=1 -f postgres.sql
--
-- then give the role a password (\password outpost in psql) and let the replicas in through
-- pg_hba.conf. The hub creates its tables itself, in this database, when it starts.
CREATE ROLE outpost LOGIN;
CREATE DATABASE outpost OWNER outpost ENCODING 'UTF8' TEMPLATE template0;
