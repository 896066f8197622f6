-- Reading resources and changing them by hand: the client's look-ups and
-- the command line's administration share these. Conventions as in
-- queries.sql; every query that selects resources does it by the one
-- resource filter below (a null parameter matches everything).

-- fragment: resource_filter
    (%(kind)s::text is null or r.kind = %(kind)s::text)
    and (%(namespace)s::text is null or r.namespace = %(namespace)s::text)
    and (%(states)s::text[] is null or r.state = any(%(states)s::text[]))
    and (%(tags)s::text[] is null or r.tags @> %(tags)s::text[])
    and (%(object_ids)s::text[] is null or r.object_id = any(%(object_ids)s::text[]))
    and (%(id_contains)s::text is null or strpos(r.object_id, %(id_contains)s::text) > 0)
    and r.id > coalesce(%(after_id)s::bigint, 0)

-- name: get_resource
select {columns}
from {schema}.resources as r
where kind = %(kind)s and object_id = %(object_id)s

-- name: list_resources
select {columns}
from {schema}.resources as r
where {resource_filter}
order by r.id
limit %(limit)s::bigint

-- name: count_states
select r.kind, r.namespace, r.state, count(*),
       min(r.scheduled_at) filter (where r.state = 'scheduled'),
       count(*) filter (where r.state = 'scheduled' and r.scheduled_at > %(now)s),
       count(*) filter (where r.state = 'scheduled' and r.scheduled_at > %(now)s
                              and r.snoozes > 0)
from {schema}.resources as r
where {resource_filter}
group by r.kind, r.namespace, r.state
order by r.kind, r.namespace, r.state

-- name: synced_per_minute
-- Resources synced now, each in the minute of its latest sync. By namespace
-- and updated_at (set with synced_at) so that it is a range scan of
-- resources_state_updated_idx per namespace, not a pass over every row.
select date_trunc('minute', r.synced_at), count(*)
from {schema}.resources as r
where r.state = 'synced' and r.namespace = any(%(namespaces)s::text[])
  and r.updated_at >= %(since)s and r.synced_at >= %(since)s
group by 1
order by 1

-- name: working_clients
select r.attempted_by, count(*)
from {schema}.resources as r
where r.state = 'pending' and r.attempted_by is not null
group by 1
order by 1

-- name: known_kinds
-- The resources' kinds by skipping through the (kind, object_id) index, one
-- probe per kind: a plain "distinct" would read every row.
with recursive kinds as (
    select min(kind) as kind from {schema}.resources
    union all
    select (select min(r.kind) from {schema}.resources as r where r.kind > kinds.kind)
    from kinds
    where kinds.kind is not null
)
select kind from {schema}.controllers
union
select kind from kinds where kind is not null
order by kind

-- name: restart
-- A new round of work, due now, attempts and errors starting again:
-- failed/degraded -> scheduled (retry), synced -> expired (invalidate, as
-- the expirer does).
with target as (
    select r.id from {schema}.resources as r
    where {resource_filter}
    order by r.id
    limit %(limit)s::bigint
),
updated as (
    update {schema}.resources as r
    set state = %(to_state)s, attempt = 0, errors = '[]', scheduled_at = {now},
        updated_at = {now}
    from target
    -- again: the row may have changed since the target was read
    where r.id = target.id and r.state = any(%(states)s::text[])
    returning {columns}
),
notified as (
    select pg_notify(%(channel)s, namespace) from (select distinct namespace from updated) as n
)
select updated.* from updated, (select count(*) from notified) as n order by id

-- name: delete
-- -> deleted; the cleaner removes it after deleted_retention. A worker still
-- running it cannot complete it (an outcome needs 'pending'), and is told
-- to stop (the "cancel:" notification names the row).
with target as (
    -- Locked: a claim committed meanwhile is seen (was = 'pending').
    select r.id, r.state as was from {schema}.resources as r
    where {resource_filter}
    order by r.id
    limit %(limit)s::bigint
    for update of r
),
updated as (
    update {schema}.resources as r
    set state = 'deleted', updated_at = %(now)s
    from target
    where r.id = target.id and r.state = any(%(states)s::text[])
    returning {columns}, target.was
),
notified as (
    select pg_notify(%(channel)s, 'cancel:' || id) from updated where was = 'pending'
)
select updated.* from updated, (select count(*) from notified) as n

-- name: hard_delete
with target as (
    select r.id from {schema}.resources as r
    where {resource_filter}
    order by r.id
    limit %(limit)s::bigint
),
removed as (
    delete from {schema}.resources as r
    using target
    where r.id = target.id
    returning {columns}
),
notified as (
    select pg_notify(%(channel)s, 'cancel:' || id) from removed where state = 'pending'
)
select removed.* from removed, (select count(*) from notified) as n
