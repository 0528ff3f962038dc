# Two images from one source tree (DESIGN.md §1): the gate image does not carry kopf, the signer
# image does not carry the policy engines.
#   docker build --target gate -t provgate/gate .
#   docker build --target signer -t provgate/signer .
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY attestation ./attestation
COPY signer ./signer
COPY gate ./gate
COPY policies ./policies
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin provgate

FROM base AS gate
RUN pip install '.[gate]' && rm -rf /src
USER 65532
ENTRYPOINT ["gate"]
CMD ["serve", "--config", "/etc/provgate/gate.yaml"]

FROM base AS signer
RUN pip install '.[signer]' && rm -rf /src
USER 65532
ENTRYPOINT ["signer"]
CMD ["run", "--config", "/etc/provgate/signer.yaml"]
