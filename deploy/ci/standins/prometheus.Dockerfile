# Stand-in for prom/prometheus:v2.x (tests only): Debian bookworm's Prometheus (2.42), laid out as
# the official image is: the binary as entrypoint (compose passes only its flags), run as nobody
# in /prometheus, the data folder it may write.
FROM bikecount-standin/debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
