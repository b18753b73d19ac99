# Osmanthus API: gunicorn serving service.wsgi:app (through `osmanthus serve`).
#
#   docker build -t osmanthus .
#   docker run -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... \
#     -e OSMANTHUS_PERSON_KEY=... -e OSMANTHUS_JWT_SECRET=... -e OSMANTHUS_CONSENT_KEY=... \
#     -e OSMANTHUS_AUDIT_KEY=... -v osmanthus-registry:/data/registry osmanthus
#
# `osmanthus serve` seals the audit log every second (OSMANTHUS_AUDIT_SEAL_SECONDS=1), which
# needs the audit signing key; a deployment that runs `osmanthus audit seal --follow` as its
# own process sets OSMANTHUS_AUDIT_SEAL_SECONDS=0 here and gives the key only to that one.
#
# No secret is baked in: every key and URL comes from the environment at run time. The image
# runs in production mode unless told otherwise, so a container started without its secrets
# refuses to start (it never falls back to generated development secrets).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LightGBM's wheel links against the OpenMP runtime, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 osmanthus \
    && useradd --system --uid 10001 --gid osmanthus --home-dir /srv/osmanthus \
       --shell /usr/sbin/nologin osmanthus \
    && mkdir -p /srv/osmanthus /data/registry \
    && chown -R osmanthus:osmanthus /srv/osmanthus /data

# The dependencies and the package, from the project's own pyproject.toml. The source is
# removed once installed, so the server runs the installed package (with its package data),
# never a stray copy on the working directory's path.
WORKDIR /usr/src/osmanthus
COPY pyproject.toml README.md ./
COPY features ./features
COPY model ./model
COPY service ./service
RUN pip install . && cd / && rm -rf /usr/src/osmanthus

WORKDIR /srv/osmanthus
USER osmanthus

# Not secrets: how many gunicorn workers, LightGBM threads per worker, where the model
# registry is mounted (a volume shared with the modellers' `osmanthus models promote`).
ENV OSMANTHUS_ENV=production \
    WEB_CONCURRENCY=2 \
    OSMANTHUS_NUM_THREADS=1 \
    OSMANTHUS_REGISTRY=/data/registry \
    GUNICORN_CMD_ARGS="--worker-tmp-dir /dev/shm"
VOLUME ["/data/registry"]

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# `osmanthus serve` checks the configuration (production refuses development secrets and
# SQLite), then replaces itself with gunicorn (PID 1, so signals reach it): $WEB_CONCURRENCY
# workers, each scoring with $OSMANTHUS_NUM_THREADS LightGBM threads.
CMD ["osmanthus", "serve", "--host", "0.0.0.0", "--port", "8000"]
