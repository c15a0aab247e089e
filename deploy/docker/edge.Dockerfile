# StreetWatch edge box: `edge run` on the cameras of /etc/streetwatch/edge.yaml.
#   context: a folder with wheels/ (the streetwatch wheel, and without a registry every dependency):
#   scripts/build_images.sh makes it. Build arguments:
#   BASE      python:3.11-slim (a registry) or streetwatch-base:bookworm (scripts/make_base_image.sh)
#   PIP_ARGS  --no-index (default: everything from wheels/); empty: dependencies from PyPI
#   VARIANT   cpu (onnxruntime) or gpu (onnxruntime-gpu with its CUDA/cuDNN wheels; run with
#             --gpus all on a host with the NVIDIA container toolkit, and list CUDAExecutionProvider
#             first in model.providers, as the default config does)
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG PIP_ARGS=--no-index
ARG VARIANT=cpu
COPY wheels/ /wheels/
RUN python3 -m venv /opt/streetwatch \
 && /opt/streetwatch/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_ARGS} --find-links /wheels \
      "streetwatch[edge]" \
 && if [ "${VARIANT}" = gpu ]; then \
      /opt/streetwatch/bin/pip uninstall -y onnxruntime \
      && /opt/streetwatch/bin/pip install --no-cache-dir ${PIP_ARGS} --find-links /wheels "onnxruntime-gpu[cuda,cudnn]"; \
    fi \
 && /opt/streetwatch/bin/edge --version

FROM ${BASE}
# opencv-python needs libGL and GLib; the debootstrap base has them, python:3.11-slim does not.
RUN if ! ldconfig -p | grep -q 'libGL.so.1 '; then \
      apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /opt/streetwatch /opt/streetwatch
# A fixed unprivileged uid (no passwd entry needed); /var/lib/streetwatch holds the outbox.
RUN mkdir -p /var/lib/streetwatch /etc/streetwatch /models && chown 10001:10001 /var/lib/streetwatch
ENV PATH=/opt/streetwatch/bin:$PATH \
    HOME=/var/lib/streetwatch \
    PYTHONUNBUFFERED=1 \
    STREETWATCH_MODEL_DIR=/models
USER 10001:10001
WORKDIR /var/lib/streetwatch
VOLUME ["/var/lib/streetwatch"]
EXPOSE 9108
# Healthy while /metrics answers (the config must set metrics_port: 9108); a stalled camera shows
# in streetwatch_seconds_since_frame, which alerting reads, not this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/metrics', timeout=4)"]
ENTRYPOINT ["edge"]
CMD ["run", "--config", "/etc/streetwatch/edge.yaml"]
