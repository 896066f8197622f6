-- trio_delta schema, version 4: cluster-wide rate limits.
-- {schema} is replaced by the configured schema, quoted as an identifier.

-- One token bucket per rate-limited kind: ``tokens`` as of ``updated_at``;
-- a claim refills it for the time since, takes a token per row it claims,
-- and writes it back, under the kind's advisory lock.
create table {schema}.rate_limits (
    kind        text             primary key,
    tokens      double precision not null,
    updated_at  timestamptz      not null
);
