-- Queries of the `trio-delta` command (status and resource administration),
-- one per "-- name:" block, parsed like queries.sql.
-- {schema} is the schema, always quoted as an identifier; every value is a
-- bound parameter. Time is the database's, read once per command as %(now)s.
--
-- The resource filter (kind, namespace, states, tags, object ids; a null
-- parameter matches everything) is repeated in each query that takes it.

-- name: schema_version
select coalesce(max(version), 0) from {schema}.migrations

-- name: database_now
select now()

-- name: known_kinds
select kind from {schema}.controllers
union
select distinct kind from {schema}.resources
order by kind

-- name: status_counts
select kind, namespace, state, count(*) as n,
       min(scheduled_at) filter (where state = 'scheduled') as oldest_scheduled_at
from {schema}.resources
where (%(kind)s::text is null or kind = %(kind)s::text)
  and (%(namespace)s::text is null or namespace = %(namespace)s::text)
group by kind, namespace, state
order by kind, namespace, state

-- name: status_controllers
select kind, next_inform_at, last_run_at, last_error, lease_owner, lease_expires_at,
       requested_at, cursor
from {schema}.controllers
where (%(kind)s::text is null or kind = %(kind)s::text)
order by kind

-- name: status_leader
select name, leader_id, elected_at, expires_at
from {schema}.leader
order by name

-- name: list_resources
select id, kind, object_id, namespace, state, attempt, max_attempts, object, metadata, tags,
       errors, created_at, updated_at, scheduled_at, attempted_at, attempted_by, synced_at
from {schema}.resources
where (%(kind)s::text is null or kind = %(kind)s::text)
  and (%(namespace)s::text is null or namespace = %(namespace)s::text)
  and (%(states)s::text[] is null or state = any(%(states)s::text[]))
  and (%(tags)s::text[] is null or tags @> %(tags)s::text[])
  and (%(object_ids)s::text[] is null or object_id = any(%(object_ids)s::text[]))
order by id
limit %(limit)s::bigint

-- name: states_of
select object_id, state
from {schema}.resources
where kind = %(kind)s::text and object_id = any(%(object_ids)s::text[])

-- name: retry
-- failed/degraded -> scheduled now, attempts start again; wakes the namespaces.
with target as (
    select id
    from {schema}.resources
    where state in ('failed', 'degraded')
      and (%(kind)s::text is null or kind = %(kind)s::text)
      and (%(namespace)s::text is null or namespace = %(namespace)s::text)
      and (%(states)s::text[] is null or state = any(%(states)s::text[]))
      and (%(tags)s::text[] is null or tags @> %(tags)s::text[])
      and (%(object_ids)s::text[] is null or object_id = any(%(object_ids)s::text[]))
    order by id
    limit %(limit)s::bigint
),
updated as (
    update {schema}.resources as r
    set state = 'scheduled', attempt = 0, scheduled_at = %(now)s, updated_at = %(now)s
    from target
    where r.id = target.id and r.state in ('failed', 'degraded')
    returning r.id, r.kind, r.object_id, r.namespace
),
notified as (
    select pg_notify(%(channel)s, namespace)
    from (select distinct namespace from updated) as n
)
select id, kind, object_id, namespace
from updated, (select count(*) from notified) as n
order by id

-- name: invalidate
-- synced -> expired, due now (as Client.invalidate); wakes the namespaces.
with target as (
    select id
    from {schema}.resources
    where state = 'synced'
      and (%(kind)s::text is null or kind = %(kind)s::text)
      and (%(namespace)s::text is null or namespace = %(namespace)s::text)
      and (%(tags)s::text[] is null or tags @> %(tags)s::text[])
      and (%(object_ids)s::text[] is null or object_id = any(%(object_ids)s::text[]))
    order by id
    limit %(limit)s::bigint
),
updated as (
    update {schema}.resources as r
    -- a new round of work: attempts and errors start again
    set state = 'expired', attempt = 0, errors = '[]', scheduled_at = %(now)s,
        updated_at = %(now)s
    from target
    where r.id = target.id and r.state = 'synced'
    returning r.id, r.kind, r.object_id, r.namespace
),
notified as (
    select pg_notify(%(channel)s, namespace)
    from (select distinct namespace from updated) as n
)
select id, kind, object_id, namespace
from updated, (select count(*) from notified) as n
order by id

-- name: soft_delete
-- any state -> deleted; the cleaner removes it after deleted_retention. A
-- worker still running it cannot complete it (completion needs 'pending').
with target as (
    select id
    from {schema}.resources
    where state <> 'deleted'
      and (%(kind)s::text is null or kind = %(kind)s::text)
      and (%(namespace)s::text is null or namespace = %(namespace)s::text)
      and (%(states)s::text[] is null or state = any(%(states)s::text[]))
      and (%(tags)s::text[] is null or tags @> %(tags)s::text[])
      and (%(object_ids)s::text[] is null or object_id = any(%(object_ids)s::text[]))
    order by id
    limit %(limit)s::bigint
)
update {schema}.resources as r
set state = 'deleted', updated_at = %(now)s
from target
where r.id = target.id and r.state <> 'deleted'
returning r.id, r.kind, r.object_id, r.namespace

-- name: hard_delete
with target as (
    select id
    from {schema}.resources
    where (%(kind)s::text is null or kind = %(kind)s::text)
      and (%(namespace)s::text is null or namespace = %(namespace)s::text)
      and (%(states)s::text[] is null or state = any(%(states)s::text[]))
      and (%(tags)s::text[] is null or tags @> %(tags)s::text[])
      and (%(object_ids)s::text[] is null or object_id = any(%(object_ids)s::text[]))
    order by id
    limit %(limit)s::bigint
)
delete from {schema}.resources as r
using target
where r.id = target.id
returning r.id, r.kind, r.object_id, r.namespace
