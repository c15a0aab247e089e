# PostgreSQL 15 from Debian, for machines without an image registry (elsewhere: postgres:15). It
# takes the official image's variables: POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, POSTGRES_DB,
# POSTGRES_USER; data in /var/lib/postgresql/data.
ARG BASE=streetwatch-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /run/postgresql && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
