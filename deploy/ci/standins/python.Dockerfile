# Stand-in for python:3.11-slim-bookworm (tests only): Debian bookworm's own Python 3.11, with pip,
# laid out as the official image is (python and pip on PATH, packages in /usr/local), plus what
# this machine's network needs: its CA bundle (the egress proxy signs TLS with its own CA) and
# its pip configuration, with the local CPU torch wheel that pip finds there.
FROM bikecount-standin/debian:bookworm
ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && pip_wheel=$(ls /usr/share/python-wheels/pip-*.whl) \
    && python "$pip_wheel/pip" install --no-cache-dir --no-index "$pip_wheel" \
    && rm -rf /root/.cache
COPY ca-bundle.crt /etc/ssl/certs/standin-ca-bundle.crt
COPY pip.conf /etc/pip.conf
COPY pip-constraints.txt /etc/pip-constraints.txt
COPY wheels/ /opt/wheels/
ENV SSL_CERT_FILE=/etc/ssl/certs/standin-ca-bundle.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/standin-ca-bundle.crt \
    PIP_CERT=/etc/ssl/certs/standin-ca-bundle.crt
CMD ["python3"]
