-- trio_delta schema, version 3: paused kinds and namespaces.
-- {schema} is replaced by the configured schema, quoted as an identifier.

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
