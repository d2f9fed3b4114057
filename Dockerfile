# coldproxy service image: serves an exported model package (ONNX Runtime, no torch).
# Build:  docker build -t coldproxy:0.1.0 .
# Run:    docker run -p 8000:8000 -v "$PWD/artifacts/package:/package:ro" -e REDIS_URL=redis://redis:6379/0 coldproxy:0.1.0
# The package is mounted, not baked in: one image serves any package, and a rollout changes the volume.
# Bundles (/v1/bundles) too, when a bundle model package is mounted at /bundle-package.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY coldproxy ./coldproxy
COPY coldproxy_cli ./coldproxy_cli
COPY service ./service
COPY loadtest ./loadtest
COPY models ./models
COPY export ./export
# the serving dependencies only (the `train` extra, with torch, stays out of the image), at the locked versions
RUN /opt/venv/bin/pip install --no-cache-dir -c requirements.lock . \
 && /opt/venv/bin/python -c "import service.app, sys; sys.exit('torch' in sys.modules)"

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="coldproxy" \
      org.opencontainers.image.description="Proxy embeddings for cold-start items, served over HTTP"
RUN groupadd --system --gid 10001 coldproxy \
 && useradd --system --uid 10001 --gid coldproxy --no-create-home --shell /usr/sbin/nologin coldproxy
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COLDPROXY_PACKAGE_DIR=/package \
    COLDPROXY_BUNDLES_PACKAGE_DIR=/bundle-package \
    COLDPROXY_HOST=0.0.0.0 \
    COLDPROXY_PORT=8000
# the working directory is root's and read-only to the app: no one can plant a .env (read from the working
# directory) the way they could in a writable /tmp
WORKDIR /srv/coldproxy
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('COLDPROXY_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["coldproxy"]
CMD ["serve"]
