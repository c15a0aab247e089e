# Mosquitto 2 from Debian, for machines without an image registry (elsewhere: eclipse-mosquitto:2).
ARG BASE=streetwatch-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto && rm -rf /var/lib/apt/lists/*
EXPOSE 1883
CMD ["mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"]
