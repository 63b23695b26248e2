# syntax=docker/dockerfile:1

# One image for the API (the default command), the worker and the one-shot migration:
#   node dist/api/main.js | node dist/worker/main.js | node dist/scripts/migrate.js
# Operator commands run the same way: node dist/scripts/admin.js help
#
# Debian rather than Alpine, because the Temporal SDK's native core bridge ships prebuilt binaries for
# glibc Linux.
ARG NODE_IMAGE=node:20-bookworm-slim

# Compiles the TypeScript and prebuilds the workflow bundle, which needs the development dependencies.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency needs its install script to build or run the service; npm 11 skips them by default too.
RUN npm ci --ignore-scripts
COPY . .
RUN npm run build

FROM ${NODE_IMAGE} AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# package.json declares "type": "module", which Node needs to load dist/ as ES modules.
COPY package.json ./
COPY --from=production-dependencies /app/node_modules ./node_modules
# Holds dist/workflow-bundle.js, so the worker starts without bundling.
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000
CMD ["node", "dist/api/main.js"]
