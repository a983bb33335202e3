# Stand-in for postgres:16 (tests only): Debian bookworm's PostgreSQL (15), started by an
# entrypoint that honours what compose uses of the official image's: POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB, /docker-entrypoint-initdb.d/*.sql, /var/lib/postgresql/data
# and pg_isready on PATH.
FROM bikecount-standin/debian:bookworm
ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PGDATA=/var/lib/postgresql/data
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /docker-entrypoint-initdb.d
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EXPOSE 5432
