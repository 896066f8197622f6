-- trio_delta's queries, one per "-- name:" block.
-- {schema} is the configured schema, always quoted as an identifier;
-- {columns} is the resource column list; a placeholder named after a
-- "-- fragment:" block of these files stands for that block's text. Every value is a bound parameter;
-- the batch arrays go in binary (%(x)b), which spares psycopg escaping every
-- element as text (it halved the time of an informer batch).
-- Time comes from the engine as %(now)s: no now() here decides anything.
-- The statements an application may run without a client (inform, request
-- an informer run, invalidate) take {now} instead: the engine's time, or
-- the database's statement time when the caller has no engine clock.

-- fragment: now
coalesce(%(now)s::timestamptz, statement_timestamp())

-- fragment: input_arrays
-- The objects of a batch, as the "input" CTE of an upsert.
-- A column whose value every object shares (one kind, one namespace, no
-- metadata: the usual bulk) comes once, as its "_all" parameter, with an empty array;
-- unnest() pads the shorter arrays with nulls. Encoding the arrays was
-- most of a bulk inform's client time.
input as (
    select coalesce(i.kind, %(kind_all)s::text) as kind, i.object_id,
           coalesce(i.namespace, %(namespace_all)s::text) as namespace, i.object, i.hash,
           coalesce(i.metadata, %(metadata_all)s::text) as metadata,
           coalesce(i.tags, %(tags_all)s::text) as tags,
           coalesce(i.max_attempts, %(max_attempts_all)s::int) as max_attempts,
           coalesce(i.priority, %(priority_all)s::int) as priority,
           coalesce(i.run_at, %(run_at_all)s::timestamptz) as run_at
    from unnest(
        %(kind)b::text[], %(object_id)b::text[], %(namespace)b::text[], %(object)b::text[],
        %(hash)b::bytea[], %(metadata)b::text[], %(tags)b::text[], %(max_attempts)b::int[],
        %(priority)b::int[], %(run_at)b::timestamptz[]
    ) as i(kind, object_id, namespace, object, hash, metadata, tags, max_attempts, priority,
           run_at)
)

-- fragment: input_one
-- One object, as scalar parameters: a single inform is the call whose
-- latency users feel, and unpacking ten one-element arrays cost the
-- server about a tenth of the statement's time.
input as (
    select %(kind)s::text as kind, %(object_id)s::text as object_id,
           %(namespace)s::text as namespace, %(object)s::text as object,
           %(hash)s::bytea as hash, %(metadata)s::text as metadata, %(tags)s::text as tags,
           %(max_attempts)s::int as max_attempts, %(priority)s::int as priority,
           %(run_at)s::timestamptz as run_at
)

-- fragment: upsert_rows
-- What every upsert does with its "input" CTE; each statement closes the
-- "upserted" CTE with a RETURNING clause of its own.
upserted as (
    insert into {schema}.resources as r (
        kind, object_id, namespace, state, attempt, max_attempts, object, hash, metadata,
        tags, errors, created_at, updated_at, scheduled_at, priority, attempted_at, attempted_by
    )
    select kind, object_id, namespace, case when claim then 'pending' else 'scheduled' end,
           case when claim then 1 else 0 end, max_attempts, object::json, hash,
           metadata::json,
           -- most objects have no tags: skip the per-row subquery for them
           case when tags = '[]' then '{{}}'::text[]
                else array(select jsonb_array_elements_text(tags::jsonb)) end,
           '[]',
           {now}, {now}, coalesce(run_at, {now}), priority,
           case when claim then {now} end, case when claim then %(claim_by)s::text end
    from (
        -- Claimed by the informing client as it is written, when it asks
        -- (a free worker waits for it) and the object is due now; the row
        -- stays the store's: an existing pending row is never taken over.
        select *, %(claim_by)s::text is not null and coalesce(run_at, {now}) <= {now} as claim
        from input
    ) as i
    on conflict (kind, object_id) do update set
        namespace = excluded.namespace,
        max_attempts = excluded.max_attempts,
        object = excluded.object,
        hash = excluded.hash,
        metadata = excluded.metadata,
        tags = excluded.tags,
        updated_at = excluded.updated_at,
        state = case when r.state = 'pending' then r.state else excluded.state end,
        attempt = case when r.state = 'pending' then r.attempt else excluded.attempt end,
        attempted_at = case when r.state <> 'pending' and excluded.state = 'pending'
                            then excluded.attempted_at else r.attempted_at end,
        attempted_by = case when r.state <> 'pending' and excluded.state = 'pending'
                            then excluded.attempted_by else r.attempted_by end,
        errors = case when r.state = 'pending' then r.errors else '[]'::jsonb end,
        scheduled_at = case when r.state = 'pending' then r.scheduled_at
                            else excluded.scheduled_at end,
        -- A statement's objects all give a priority or none does: without
        -- one, a resource keeps the priority it has.
        priority = case when %(keep_priority)s then r.priority else excluded.priority end
    where r.hash <> excluded.hash or (%(process_existing)s and r.state <> 'pending')

-- fragment: upsert_returned
-- What inform hands back of the rows written: the rest of each row is what
-- the caller sent (reading every object's JSON back cost a bulk inform a
-- third of its time).
    returning r.kind, r.object_id, r.id, r.state, r.attempt, r.errors::text as errors,
              r.created_at, r.updated_at, r.scheduled_at, r.attempted_at, r.attempted_by,
              r.synced_at, (r.xmax = 0) as inserted, r.namespace, r.priority, r.snoozes
),
notified as (
    select pg_notify(%(channel)s, namespace)
    from (select distinct namespace from upserted where state = 'scheduled') as n
)
select upserted.* from upserted, (select count(*) from notified) as n

-- name: upsert
with {input_arrays}, {upsert_rows}
{upsert_returned}

-- name: upsert_one
-- The same for a single object (Client.inform's usual statement).
with {input_one}, {upsert_rows}
{upsert_returned}

-- name: upsert_quiet
-- One count instead of the rows, for informer batches: reading every
-- object's JSON back would be waste.
with {input_arrays}, {upsert_rows}
    returning r.namespace, r.state
),
notified as (
    select pg_notify(%(channel)s, namespace)
    from (select distinct namespace from upserted where state = 'scheduled') as n
)
select (select count(*) from upserted), (select count(*) from notified)

-- name: lock_existing
-- Whole rows: an object found stale, or unchanged, is reported as stored
-- without reading it again.
select {columns}
from {schema}.resources as r
join unnest(%(kind)s::text[], %(object_id)s::text[]) as i(kind, object_id)
    on r.kind = i.kind and r.object_id = i.object_id
order by r.id
for update of r

-- name: select_existing
select {columns}
from {schema}.resources as r
join unnest(%(kind)s::text[], %(object_id)s::text[]) as i(kind, object_id)
    on r.kind = i.kind and r.object_id = i.object_id

-- fragment: claim_candidates
-- The namespace's due rows of the kinds, in claim order; each claim closes
-- it with a LIMIT of its own.
    select id
    from {schema}.resources
    where namespace = %(namespace)s
      and kind = any(%(kinds)s::text[])
      and state in ('scheduled', 'failed', 'expired')
      and scheduled_at <= %(now)s
    order by priority desc, scheduled_at, id

-- fragment: claim_update
update {schema}.resources as r
set state = 'pending',
    attempt = r.attempt + 1,
    attempted_at = %(now)s,
    attempted_by = %(client_id)s,
    updated_at = %(now)s
from claimable
where r.id = claimable.id
returning {columns}

-- name: claim
with claimable as (
{claim_candidates}
    limit %(limit)s
    for update skip locked
)
{claim_update}

-- name: claim_capped
-- One kind under a cluster-wide cap (ObjectSettings.global_parallelism): at
-- most what the cap leaves, counting the kind's pending rows in every
-- namespace and client. The caller holds the kind's advisory lock (see
-- lock_kind) until it commits, so two claims cannot both see room for one.
with claimable as (
{claim_candidates}
    limit greatest(0, least(%(limit)s, %(cap)s - (
        select count(*) from {schema}.resources
        where kind = any(%(kinds)s::text[]) and state = 'pending')))
    for update skip locked
)
{claim_update}

-- name: read_bucket
-- The kind's tokens now: refilled at %(rate)s a second since last written,
-- at most %(burst)s (a new bucket starts full). The caller holds lock_kind.
with created as (
    insert into {schema}.rate_limits (kind, tokens, updated_at)
    values (%(kind)s, %(burst)s, %(now)s)
    on conflict (kind) do nothing
    returning tokens
)
select coalesce(
    (select tokens from created),
    (select least(%(burst)s::float8, tokens
                  + greatest(0, extract(epoch from %(now)s - updated_at)) * %(rate)s)
     from {schema}.rate_limits where kind = %(kind)s))

-- name: write_bucket
update {schema}.rate_limits
set tokens = %(tokens)s, updated_at = greatest(updated_at, %(now)s)
where kind = %(kind)s

-- name: lock_kind
-- Claims of a capped kind take turns, cluster-wide, until they commit;
-- other kinds' claims never wait for it.
select pg_advisory_xact_lock(hashtext(%(lock)s))

-- name: complete
-- Materialized: the planner may rescan it once per candidate row, and
-- re-running unnest() over six arrays each time cost more than the update.
-- outcome, error and retry_at come as one "_all" value when the batch's
-- rows share it (a clean batch: synced, neither error nor retry time).
with outcome as materialized (
    select o.id, o.attempt, o.hash,
           coalesce(o.outcome, %(outcome_all)s::text) as outcome,
           coalesce(o.error, %(error_all)s::text) as error,
           coalesce(o.retry_at, %(retry_at_all)s::timestamptz) as retry_at
    from unnest(
        %(id)b::bigint[], %(attempt)b::int[], %(hash)b::bytea[], %(outcome)b::text[],
        %(error)b::text[], %(retry_at)b::timestamptz[]
    ) as o(id, attempt, hash, outcome, error, retry_at)
),
-- The batch's rows, locked here without waiting (as strongly as the update
-- below locks them): a row another transaction holds (a user's open
-- transaction that informed it, a SELECT ... FOR UPDATE) is skipped and
-- reported below, so one held row cannot stall the whole batch, and with it
-- every worker behind the outcome writer.
target as materialized (
    select id from {schema}.resources
    where id = any(%(id)b::bigint[])
    for no key update skip locked
),
updated as (
    update {schema}.resources as r
    -- requeue: synced now, due again at retry_at; snooze: due again at
    -- retry_at with the attempt given back and counted as a snooze.
    set state = case
            when o.outcome in ('handback', 'requeue', 'snooze') or r.hash <> o.hash
                then 'scheduled'
            else o.outcome end,
        attempt = case
            when o.outcome = 'handback' then r.attempt - 1
            when r.hash <> o.hash or o.outcome = 'requeue' then 0
            when o.outcome = 'snooze' then r.attempt - 1
            else r.attempt end,
        scheduled_at = case
            when o.outcome = 'handback' or r.hash <> o.hash then %(now)s
            when o.outcome in ('failed', 'requeue', 'snooze') then o.retry_at
            else r.scheduled_at end,
        synced_at = case
            when o.outcome in ('synced', 'requeue') and r.hash = o.hash then %(now)s
            else r.synced_at end,
        snoozes = r.snoozes + (o.outcome = 'snooze' and r.hash = o.hash)::int,
        errors = case
            when o.outcome = 'handback' then r.errors
            when r.hash <> o.hash then '[]'::jsonb
            when o.error is null then r.errors
            when jsonb_array_length(r.errors) >= %(max_errors)s
                then (r.errors - 0) || jsonb_build_array(o.error::jsonb)
            else r.errors || jsonb_build_array(o.error::jsonb) end,
        updated_at = %(now)s
    from outcome as o
    -- Rows are found by primary key ("id = any", the locked ones), then
    -- matched to their outcome. The guard on state is written so that no index on state can
    -- serve it: with one, the planner (estimating few pending rows) joined
    -- every pending row against every outcome, 100 x 100 per batch.
    where r.id = any(array(select id from target))
      and r.id = o.id
      and (r.state = 'pending') is true
      and r.attempt = o.attempt
      and r.attempted_by = %(client_id)s
    returning r.id, r.state, r.attempt, r.scheduled_at, r.synced_at, r.namespace
),
notified as (
    select pg_notify(%(channel)s, namespace)
    from (select distinct namespace from updated where state = 'scheduled') as n
),
-- Skipped rows that exist (a deleted row is no reason to try again).
held as (
    select id from {schema}.resources
    where id = any(array(
        select o.id from outcome as o where not exists (select from target as t where t.id = o.id)))
)
select id, state, attempt, scheduled_at, synced_at, false as held
from updated, (select count(*) from notified) as n
union all
select id, null, null, null, null, true from held

-- name: apply_settings
-- A connection's settings (names and values), for its session (local
-- false) or for the current transaction only (local true: nothing outlives
-- it, as a transaction-mode pooler needs).
select set_config(name, value, %(local)s)
from unnest(%(names)s::text[], %(values)s::text[]) as s(name, value)

-- name: begin_with_settings
-- A transaction that starts with settings of its own (apply_settings,
-- local). Two statements in one message: sent with its parameters bound
-- by the client, as one simple query (one round trip).
begin;
select set_config(name, value, true)
from unnest(%(names)s::text[], %(values)s::text[]) as s(name, value)

-- name: set_local_lock_timeout
-- Bound every lock wait for the rest of the current transaction, in milliseconds.
select set_config('lock_timeout', %(lock_timeout)s, true)

-- name: scope_lock_timeout
-- The same inside a user's transaction, returning the value in force
-- before, to be put back (set_local_lock_timeout) for the user's later
-- statements.
select old, set_config('lock_timeout', %(lock_timeout)s, true)
from (select current_setting('lock_timeout') as old offset 0) as s

-- name: held_rows
-- Which of these rows another transaction holds now, to name them in an
-- error. The rows it could lock are released as the statement ends.
with lockable as (
    select r.id
    from {schema}.resources as r
    join unnest(%(kind)s::text[], %(object_id)s::text[]) as i(kind, object_id)
        on r.kind = i.kind and r.object_id = i.object_id
    for update of r skip locked
)
select r.kind, r.object_id
from {schema}.resources as r
join unnest(%(kind)s::text[], %(object_id)s::text[]) as i(kind, object_id)
    on r.kind = i.kind and r.object_id = i.object_id
where r.id not in (select id from lockable)
order by r.id

-- name: next_scheduled_at
select min(scheduled_at)
from {schema}.resources
where namespace = any(%(namespaces)s::text[])
  and kind = any(%(kinds)s::text[])
  and state in ('scheduled', 'failed', 'expired')

-- name: schema_version
select coalesce(max(version), 0) from {schema}.migrations

-- name: database_now
select now()

-- name: read_only
-- Why writes would fail here, or nulls: a standby, or read-only by default.
select pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'

-- name: ensure_controllers
insert into {schema}.controllers as c (kind, next_inform_at, created_at, updated_at)
select kind, next_at, %(now)s, %(now)s
from unnest(%(kind)s::text[], %(next_inform_at)s::timestamptz[]) as i(kind, next_at)
on conflict (kind) do update
    set next_inform_at = excluded.next_inform_at, updated_at = excluded.updated_at
    where c.next_inform_at is null and excluded.next_inform_at is not null
      and c.lease_owner is null

-- name: claim_inform
update {schema}.controllers as c
set lease_owner = %(client_id)s,
    lease_expires_at = %(lease_until)s,
    updated_at = %(now)s
where kind = %(kind)s
  and (next_inform_at <= %(now)s or requested_at is not null)
  and (lease_expires_at is null or lease_expires_at < %(now)s)
returning c.cursor, c.requested_at, c.process_existing, c.inform_options::text

-- name: finish_inform
update {schema}.controllers as c
set lease_owner = null,
    lease_expires_at = null,
    -- A naive cursor (an object's created_at() without a zone) is a time in
    -- the database's own zone, as a session that set none would read it:
    -- trio_delta's sessions run in UTC.
    cursor = coalesce(
        %(cursor)s,
        timezone((select reset_val from pg_settings where name = 'TimeZone'),
                 %(cursor_naive)s::timestamp),
        c.cursor),
    next_inform_at = case when %(reschedule)s then %(next_inform_at)s else c.next_inform_at end,
    requested_at = case when c.requested_at is not distinct from %(requested_at)s
                        then null else c.requested_at end,
    process_existing = case when c.requested_at is not distinct from %(requested_at)s
                            then false else c.process_existing end,
    inform_options = case when c.requested_at is not distinct from %(requested_at)s
                          then null else c.inform_options end,
    last_run_at = %(now)s,
    last_error = %(error)s,
    updated_at = %(now)s
where kind = %(kind)s and lease_owner = %(client_id)s

-- name: request_inform
with requested as (
    insert into {schema}.controllers as c (
        kind, requested_at, process_existing, inform_options, created_at, updated_at)
    values (%(kind)s, {now}, %(process_existing)s, %(inform_options)s::jsonb, {now}, {now})
    on conflict (kind) do update
        set requested_at = excluded.requested_at,
            process_existing = c.process_existing or excluded.process_existing,
            inform_options = coalesce(excluded.inform_options, c.inform_options),
            updated_at = excluded.updated_at
    returning kind
)
select pg_notify(%(channel)s, 'inform:' || kind) from requested

-- name: get_controller
select kind, cursor, next_inform_at, lease_owner, lease_expires_at, requested_at,
       process_existing, last_run_at, last_error
from {schema}.controllers
where kind = %(kind)s

-- name: list_controllers
select kind, cursor, next_inform_at, lease_owner, lease_expires_at, requested_at,
       process_existing, last_run_at, last_error
from {schema}.controllers
order by kind

-- name: elect
-- A renewal never moves the expiry back: one the client gave up on (sent
-- earlier, on a connection it abandoned) may commit after a newer one, and
-- must not shorten the lease the leader acts on.
insert into {schema}.leader as l (name, leader_id, elected_at, expires_at)
values (%(name)s, %(client_id)s, %(now)s, %(expires_at)s)
on conflict (name) do update
    set leader_id = excluded.leader_id,
        elected_at = case when l.leader_id = excluded.leader_id then l.elected_at
                          else excluded.elected_at end,
        expires_at = case when l.leader_id = excluded.leader_id
                          then greatest(l.expires_at, excluded.expires_at)
                          else excluded.expires_at end
    where l.leader_id = excluded.leader_id or l.expires_at < %(now)s
returning leader_id

-- name: resign
with resigned as (
    delete from {schema}.leader where name = %(name)s and leader_id = %(client_id)s
    returning name
)
select pg_notify(%(channel)s, 'leader:' || name) from resigned

-- name: get_leader
select leader_id, elected_at, expires_at from {schema}.leader where name = %(name)s

-- name: rescue
with stuck as (
    select id from {schema}.resources
    where state = 'pending' and attempted_at < %(stuck_before)s
    order by attempted_at
    limit %(limit)s
    for update skip locked
),
updated as (
    update {schema}.resources as r
    set state = case when r.attempt >= r.max_attempts then 'degraded' else 'failed' end,
        scheduled_at = %(now)s,
        errors = case
            when jsonb_array_length(r.errors) >= %(max_errors)s
                then (r.errors - 0) || jsonb_build_array(
                    jsonb_build_object('at', %(now_text)s::text, 'attempt', r.attempt,
                                       'error', %(error)s::text, 'trace', ''))
            else r.errors || jsonb_build_array(
                    jsonb_build_object('at', %(now_text)s::text, 'attempt', r.attempt,
                                       'error', %(error)s::text, 'trace', '')) end,
        updated_at = %(now)s
    from stuck
    where r.id = stuck.id
    returning r.namespace, r.state
),
notified as (
    select pg_notify(%(channel)s, namespace)
    from (select distinct namespace from updated where state = 'failed') as n
)
select count(*) from updated, (select count(*) from notified) as n

-- name: expire
with expiring as (
    select id from {schema}.resources
    where namespace = %(namespace)s and state = 'synced' and synced_at < %(synced_before)s
    order by synced_at
    limit %(limit)s
    for update skip locked
),
updated as (
    update {schema}.resources as r
    -- a new round of work: attempts start again
    set state = 'expired', attempt = 0, errors = '[]', scheduled_at = %(now)s,
        updated_at = %(now)s
    from expiring
    where r.id = expiring.id
    returning r.namespace
),
notified as (
    select pg_notify(%(channel)s, namespace) from (select distinct namespace from updated) as n
)
select count(*) from updated, (select count(*) from notified) as n

-- name: clean
with doomed as (
    select id from {schema}.resources
    where namespace = %(namespace)s and state = %(state)s and updated_at < %(updated_before)s
    limit %(limit)s
    for update skip locked
)
delete from {schema}.resources as r
using doomed
where r.id = doomed.id

-- name: pause
-- Every client rereads the pauses on the NOTIFY.
with added as (
    insert into {schema}.pauses (kind, namespace, paused_at, paused_by)
    values (coalesce(%(kind)s, ''), coalesce(%(namespace)s, ''), %(now)s, %(by)s)
    on conflict (kind, namespace) do nothing
    returning 1
),
notified as (
    select pg_notify(%(channel)s, 'pause:') from added
)
select (select count(*) from added), (select count(*) from notified)

-- name: resume
with removed as (
    delete from {schema}.pauses
    where kind = coalesce(%(kind)s, '') and namespace = coalesce(%(namespace)s, '')
    returning 1
),
notified as (
    select pg_notify(%(channel)s, 'pause:') from removed
)
select (select count(*) from removed), (select count(*) from notified)

-- name: list_pauses
select nullif(kind, ''), nullif(namespace, ''), paused_at, paused_by
from {schema}.pauses
order by kind, namespace

-- name: not_pending
select i from unnest(%(ids)s::bigint[]) as i
where not exists (select from {schema}.resources as r where r.id = i and r.state = 'pending')
