# creditgate: build with `docker build -t creditgate .`, run with docker compose (see docker-compose.yml).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev
RUN useradd --system --home /app creditgate && chown -R creditgate /app
USER creditgate
EXPOSE 8888
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8888/healthz').status != 200)"
CMD ["/app/.venv/bin/creditgate", "serve", "--host", "0.0.0.0", "--port", "8888"]
