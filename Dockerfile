# The relay daemon (and the rest of the CLI) as an image: `docker compose up` builds it. Node 24 is the current LTS.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY migrations ./migrations
RUN npm run build && npm prune --omit=dev

FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# No src/ in this stage, so bin/exactly-once.js runs the build in dist/.
COPY bin ./bin
COPY scripts/docker-entrypoint.sh ./scripts/
# docker-compose.yml keeps the admin token in a named volume mounted here; a new volume takes this directory's
# owner, so the unprivileged user can write the token into it.
RUN mkdir -p /run/exactly-once && chown node:node /run/exactly-once
USER node
ENTRYPOINT ["sh", "/app/scripts/docker-entrypoint.sh"]
CMD ["relay"]
