-- trio_delta schema, version 2: priorities, run-at times and snoozes.
-- {schema} is replaced by the configured schema, quoted as an identifier.

-- Constant defaults: both columns are added without rewriting the table.
alter table {schema}.resources
    add column priority smallint not null default 0,
    add column snoozes integer not null default 0;

-- Claims take the highest priority first, then the earliest due. The index
-- is rebuilt in this transaction: writes to the table wait until it is.
drop index {schema}.resources_claim_idx;
create index resources_claim_idx on {schema}.resources (namespace, priority desc, scheduled_at, id)
    where state in ('scheduled', 'failed', 'expired');
