# revcov API server against an external PostgreSQL given by REVCOV_DATABASE_URL.
# Migrations are a separate command, run once per release before the new image serves:
#   docker run --rm -e REVCOV_DATABASE_URL=... revcov revcov migrate
# `serve` does not migrate here (REVCOV_MIGRATE_ON_START=false), so replicas that start
# together never race on the schema; /readyz returns 503 until the schema is migrated.
# The wheel carries the code and the migrations (as `app.schema_migrations`), so the image
# runs from an ordinary install, not from a copy of the source tree.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY app ./app
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REVCOV_ENVIRONMENT=production \
    REVCOV_MIGRATE_ON_START=false \
    REVCOV_HOST=0.0.0.0 \
    REVCOV_PORT=8000

RUN groupadd --system revcov \
    && useradd --system --gid revcov --create-home --home-dir /srv/revcov revcov
WORKDIR /srv/revcov

# Dependencies first, in their own layer, so code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

USER revcov
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import os, urllib.request; port = os.environ.get('REVCOV_PORT', '8000'); urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4)"
CMD ["revcov", "serve"]
