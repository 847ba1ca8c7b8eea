# kpibot: the Slack app (`kpibot serve`). All configuration is environment variables:
#   SLACK_BOT_TOKEN plus SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode),
#   KPI_DATABASE_URL, PORT (default 3000) ... see README.md.
#   docker build -t kpibot . && docker run --rm -p 3000:3000 -e SLACK_BOT_TOKEN -e SLACK_SIGNING_SECRET kpibot

# ---- build: the wheel, from the files a wheel is made of (as scripts/packaging_test.py does)
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY metrics ./metrics
COPY storage ./storage
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- run: the wheel installed (not the source tree), as a non-root user
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PORT=3000

COPY --from=build /wheels /wheels
RUN pip install /wheels/kpibot-*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 kpibot \
    && useradd --system --uid 10001 --gid kpibot --home-dir /app --shell /usr/sbin/nologin kpibot \
    && mkdir -p /app/data \
    && chown kpibot /app/data

# ./data (the embedded DuckDB and the state database by default) is /app/data: mount a volume there
WORKDIR /app
USER 10001:10001

EXPOSE 3000

# /healthz is served in both modes (HTTP: beside /slack/events; Socket Mode: a small health
# server on PORT). 503 while Slack is unreachable or the Socket Mode connection is down, so the
# status says so; the app keeps running and reconnects by itself (see README, Deployment).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=2)"

CMD ["kpibot", "serve"]
