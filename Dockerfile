# kpibot: the Slack app (`kpibot serve`). All configuration is environment variables:
#   SLACK_BOT_TOKEN plus SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode),
#   KPI_DATABASE_URL, PORT (default 3000) ... see README.md.
#   docker build -t kpibot . && docker run --rm -p 3000:3000 -e SLACK_BOT_TOKEN -e SLACK_SIGNING_SECRET kpibot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PORT=3000

WORKDIR /app

# The three packages and their dependencies from pyproject.toml.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY metrics ./metrics
COPY storage ./storage
RUN pip install . \
    && groupadd --system --gid 10001 kpibot \
    && useradd --system --uid 10001 --gid kpibot --home-dir /app --shell /usr/sbin/nologin kpibot \
    && mkdir -p /app/data \
    && chown kpibot /app/data

USER 10001:10001

EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, sys, urllib.request; sys.exit(0) if os.environ.get('SLACK_APP_TOKEN') else urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=2)"

CMD ["kpibot", "serve"]
