# Stand-in for haproxy:3.2 (tests only): Debian bookworm's HAProxy (2.6, with the Prometheus
# exporter), laid out as the official image is: the configuration read from
# /usr/local/etc/haproxy/haproxy.cfg, run in the foreground as user haproxy, stopped gracefully
# by SIGUSR1. deploy/haproxy/haproxy.cfg uses only keywords that 2.6 and 3.x read alike.
FROM bikecount-standin/debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/etc/haproxy
USER haproxy
WORKDIR /var/lib/haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
