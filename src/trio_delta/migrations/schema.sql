-- trio_delta's whole schema at the latest version, for a schema created
-- fresh: the same result as every migration in turn (a test compares
-- them). Keep it in step with each new migration.
-- {schema} is replaced by the configured schema, quoted as an identifier.

create table {schema}.resources (
    id            bigint generated always as identity primary key,
    kind          text        not null,
    object_id     text        not null,
    namespace     text        not null,
    state         text        not null,
    attempt       integer     not null default 0,
    max_attempts  integer     not null,
    -- json, not jsonb: it keeps the encoded text exactly (jsonb would print
    -- 1e23 as 100000000000000000000000, changing an untyped float to an int).
    object        json        not null,
    hash          bytea       not null,
    metadata      json        not null default '{{}}',  -- json: numbers kept as written
    tags          text[]      not null default '{{}}',
    errors        jsonb       not null default '[]',
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    scheduled_at  timestamptz not null,
    attempted_at  timestamptz,
    attempted_by  text,
    synced_at     timestamptz,
    priority      smallint    not null default 0,
    snoozes       integer     not null default 0,
    constraint resources_kind_object_id_key unique (kind, object_id),
    constraint resources_state_check check (
        state in ('scheduled', 'pending', 'synced', 'failed', 'degraded', 'expired', 'deleted')
    ),
    constraint resources_attempt_check check (attempt >= 0 and max_attempts >= 1)
);

-- The queue: claimable rows in claim order, per namespace (the highest
-- priority first, then the earliest due).
create index resources_claim_idx on {schema}.resources (namespace, priority desc, scheduled_at, id)
    where state in ('scheduled', 'failed', 'expired');

-- The rescuer looks for pending rows by age.
create index resources_pending_idx on {schema}.resources (attempted_at)
    where state = 'pending';

-- The cleaner and expirer look for rows by state and age within a namespace.
-- Partial: claims (-> pending) then need not add an entry here, one index
-- write fewer on the hottest update.
create index resources_state_updated_idx on {schema}.resources (state, namespace, updated_at)
    where state in ('synced', 'degraded', 'deleted');

create table {schema}.controllers (
    kind              text        primary key,
    cursor            timestamptz,
    next_inform_at    timestamptz,
    lease_owner       text,
    lease_expires_at  timestamptz,
    requested_at      timestamptz,
    process_existing  boolean     not null default false,
    inform_options    jsonb,
    last_run_at       timestamptz,
    last_error        text,
    created_at        timestamptz not null,
    updated_at        timestamptz not null
);

create table {schema}.leader (
    name        text        primary key,
    leader_id   text        not null,
    elected_at  timestamptz not null,
    expires_at  timestamptz not null
);

-- A row pauses a kind ('' namespace: in every namespace), a namespace (''
-- kind: every kind in it), or one kind in one namespace. Clients read the
-- table when it changes (a NOTIFY) and leave paused work unclaimed.
create table {schema}.pauses (
    kind       text        not null default '',
    namespace  text        not null default '',
    paused_at  timestamptz not null,
    paused_by  text        not null,
    primary key (kind, namespace),
    constraint pauses_something check (kind <> '' or namespace <> '')
);

-- One token bucket per rate-limited kind: ``tokens`` as of ``updated_at``;
-- a claim refills it for the time since, takes a token per row it claims,
-- and writes it back, under the kind's advisory lock.
create table {schema}.rate_limits (
    kind        text             primary key,
    tokens      double precision not null,
    updated_at  timestamptz      not null
);
