# wecom-bind: the service image. Settings come from WECOM_BIND_* variables at run time, never from here.
# Only the service is copied: no sandbox/ (the emulators), tests/ or bench/ (tests/ops/test_image.py checks).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY callback_service ./callback_service
COPY handlers ./handlers
COPY crypto ./crypto
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 wecom \
    && mkdir -p /var/lib/wecom-bind && chown wecom /var/lib/wecom-bind
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER wecom
WORKDIR /var/lib/wecom-bind
ENV WECOM_BIND_STORE_URL=sqlite:////var/lib/wecom-bind/wecom-bind.db \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/wecom-bind"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"
ENTRYPOINT ["wecom-bind"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
