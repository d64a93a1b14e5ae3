# The convlog command; docker-compose.yml runs it as `convlog serve` next to nats-server.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY eventlog ./eventlog
COPY projections ./projections
RUN pip install . \
    && useradd --system --create-home convlog

USER convlog
ENTRYPOINT ["convlog"]
CMD ["serve"]
