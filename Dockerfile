# wecom-bind: the service image. Settings come from WECOM_BIND_* variables at run time, never from here.
# Only the service is copied: no sandbox/ (the emulators), tests/ or bench/ (tests/ops/test_image.py checks).
# Every package comes from the lock files, checked against their hashes: one commit, one set of versions.
FROM python:3.11-slim AS build
WORKDIR /src
# A fixed date makes the wheel's zip entries and every .pyc (hash-checked, not by mtime) the same bytes
# in every build: two builds of one commit install the same files.
ENV SOURCE_DATE_EPOCH=315532800
COPY requirements/build.txt requirements/runtime.txt ./requirements/
# The locked setuptools builds the wheel; the locked runtime set goes into a venv without pip, the one
# directory the final stage copies.
RUN pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && python -m venv --without-pip /opt/wecom-bind \
    && pip --python /opt/wecom-bind/bin/python install --no-cache-dir --require-hashes --no-deps \
       -r requirements/runtime.txt
COPY pyproject.toml setup.cfg README.md ./
COPY callback_service ./callback_service
COPY handlers ./handlers
COPY crypto ./crypto
COPY config ./config
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && pip --python /opt/wecom-bind/bin/python install --no-cache-dir --no-deps /tmp/dist/*.whl

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 wecom \
    && mkdir -p /var/lib/wecom-bind && chown wecom /var/lib/wecom-bind
# The installed venv alone: no wheel file reaches this stage.
COPY --from=build /opt/wecom-bind /opt/wecom-bind
USER wecom
WORKDIR /var/lib/wecom-bind
# WECOM_BIND_PORT is the one place the port is set: `serve` listens on it and the health check asks it.
ENV PATH=/opt/wecom-bind/bin:$PATH \
    WECOM_BIND_PORT=8080 \
    WECOM_BIND_STORE_URL=sqlite:////var/lib/wecom-bind/wecom-bind.db \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/wecom-bind"]
EXPOSE $WECOM_BIND_PORT
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:' + os.environ['WECOM_BIND_PORT'] + '/health', timeout=2).status != 200)"
ENTRYPOINT ["wecom-bind"]
CMD ["serve", "--host", "0.0.0.0"]
