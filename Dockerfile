# syntax=docker/dockerfile:1
# Multi-stage: build with dev dependencies, run with production ones only, as a non-root user.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    TALKBATCH_OUT_DIR=/data/out
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY fixtures/media ./fixtures/media
COPY jobs ./jobs
RUN mkdir -p /data/out && chown -R node:node /data
USER node
VOLUME ["/data/out"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["worker"]
