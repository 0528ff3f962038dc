# Two images from one source tree (DESIGN.md §1): the gate image does not carry kopf, the signer
# image does not carry the policy engines.
#   docker build --target gate -t provgate/gate .
#   docker build --target signer -t provgate/signer .

# The default policy engine runs OPA's Wasm compiler output in process; the gate compiles policies
# with the opa binary (once per policy set, cached), so the gate image carries it.
FROM golang:1.26 AS opa
RUN CGO_ENABLED=0 GOBIN=/out go install github.com/open-policy-agent/opa@v1.22.2

FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY attestation ./attestation
COPY signer ./signer
COPY gate ./gate
COPY policies ./policies
RUN useradd --uid 65532 --create-home --shell /usr/sbin/nologin provgate

FROM base AS gate
COPY --from=opa /out/opa /usr/local/bin/opa
RUN pip install '.[gate]' && rm -rf /src
USER 65532
ENTRYPOINT ["gate"]

FROM base AS signer
RUN pip install '.[signer]' && rm -rf /src
USER 65532
ENTRYPOINT ["signer"]
