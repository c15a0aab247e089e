# StreetWatch central: `central serve` (ingest, workflow, web queue) or one role of it
# (`serve --no-web`, `serve --no-ingest`). Context and build arguments as in edge.Dockerfile.
# Extras: central, and cluster (nats-py, bcrypt) so `broker.kind: jetstream` works (docs/cluster.md);
# the build fails here if the JetStream consumer does not import.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG PIP_ARGS=--no-index
COPY wheels/ /wheels/
RUN python3 -m venv /opt/streetwatch \
 && /opt/streetwatch/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_ARGS} --find-links /wheels \
      "streetwatch[central,cluster]" \
 && /opt/streetwatch/bin/central --version \
 && /opt/streetwatch/bin/python -c "import bcrypt, streetwatch.central.consumer_jetstream"

FROM ${BASE}
COPY --from=build /opt/streetwatch /opt/streetwatch
RUN mkdir -p /var/lib/streetwatch/evidence /etc/streetwatch && chown -R 10001:10001 /var/lib/streetwatch
ENV PATH=/opt/streetwatch/bin:$PATH \
    HOME=/var/lib/streetwatch \
    PYTHONUNBUFFERED=1 \
    STREETWATCH_CENTRAL_CONFIG=/etc/streetwatch/central.yaml
USER 10001:10001
WORKDIR /var/lib/streetwatch
VOLUME ["/var/lib/streetwatch"]
EXPOSE 8000
# The web queue answers its login page; an ingest-only container (serve --no-web) replaces this
# check (see deploy/compose/docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/login', timeout=4)"]
ENTRYPOINT ["central"]
CMD ["serve"]
