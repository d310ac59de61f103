# syntax=docker/dockerfile:1
# pullwarden container image: multi-stage, Node 24, production dependencies only, non-root, works with
# a read-only root filesystem (cache, metadata and TUF cache live on the /var/lib/pullwarden volume).
#
# Base images are referenced by tag here: no registry could be reached where this file was written, so
# no digest was looked up (a made-up digest would be worse than none). Pin before you ship, with one line:
#   crane digest node:24-bookworm-slim        # or: docker buildx imagetools inspect node:24-bookworm-slim
# and replace NODE_IMAGE's default with node:24-bookworm-slim@sha256:<that digest>.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency's install script downloads a Node binary, which the image
# already has; no dependency needs a build script (no native modules: SQLite is node:sqlite).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pullwarden" \
      org.opencontainers.image.description="Pull-through OCI registry proxy that enforces trust at pull time" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/pullwarden/pullwarden"
ENV NODE_ENV=production \
    PULLWARDEN_LISTEN=0.0.0.0:5050 \
    PULLWARDEN_STORAGE_DIR=/var/lib/pullwarden
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY config/pullwarden.example.yaml ./config/
RUN mkdir -p /var/lib/pullwarden && chown node:node /var/lib/pullwarden
VOLUME ["/var/lib/pullwarden"]
USER node
EXPOSE 5050
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:5050/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# A small young generation keeps peak RSS low while large blobs stream (see the benchmark).
ENTRYPOINT ["node", "--max-semi-space-size=1", "/app/bin/pullwarden.js"]
CMD ["serve"]
