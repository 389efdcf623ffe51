# One Dockerfile, two images: both apps come out of the same `npm ci` and `nest build`, so the
# build stage is shared (and cached) and there is one base image and one lockfile to bump.
#
#   docker build --target balancer  -t ollama-gpu-balancer/balancer:local .
#   docker build --target gpu-agent -t ollama-gpu-balancer/gpu-agent:local .
#
# docker-compose.yml builds both. See docs/deployment.md.
# Pin a digest in production: --build-arg NODE_IMAGE=node:20-bookworm-slim@sha256:...
ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------
# build: TypeScript (nest build) and the NVML addon (node-gyp), then drop the dev dependencies.
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# node-gyp builds against the headers that ship in the node image (/usr/local/include/node)
# instead of downloading them: same ABI as the runtime stage, and no extra network fetch.
ENV npm_config_nodedir=/usr/local \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build the addon before its sources are here; the explicit
# `npm run build` below does it. This layer stays cached until the lockfile changes.
RUN npm ci --ignore-scripts
COPY nest-cli.json tsconfig.json tsconfig.build.json ./
COPY apps ./apps
COPY libs ./libs
# Fail the build here, not at container start, if an entry point or the addon is missing.
RUN npm run build \
 && test -f dist/apps/balancer/src/main.js \
 && test -f dist/apps/gpu-agent/src/main.js \
 && test -f libs/nvml/build/Release/nvml.node \
 && npm prune --omit=dev

# ---------------------------------------------------------------------------------------------
# runtime: no compiler, no dev dependencies, code owned by root and read-only to the app user.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/libs ./dist/libs
# node is PID 1 and handles SIGTERM itself (the balancer drains, the agent closes through Nest's
# shutdown hooks); neither app spawns children, so no init process is needed to reap zombies.
STOPSIGNAL SIGTERM

# ---------------------------------------------------------------------------------------------
FROM runtime AS gpu-agent
COPY --from=build /src/dist/apps/gpu-agent ./dist/apps/gpu-agent
# dist/libs/nvml/src/addon.js looks for libs/nvml/build/Release/nvml.node relative to /app.
COPY --from=build /src/libs/nvml/build/Release/nvml.node ./libs/nvml/build/Release/nvml.node
# The addon must load under this stage's node (ABI check). libnvidia-ml.so.1 is dlopen()ed
# later, at first read: the NVIDIA container toolkit injects it when the container starts.
RUN node -e "require('/app/libs/nvml/build/Release/nvml.node')"
# Ask the NVIDIA runtime for NVML/nvidia-smi only (utility), never the compute libraries.
# Compose and Kubernetes narrow NVIDIA_VISIBLE_DEVICES to the one GPU beside each Ollama.
ENV PORT=9400 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
EXPOSE 9400
USER 1000:1000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||9400)+'/health/ready',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
CMD ["node", "dist/apps/gpu-agent/src/main.js"]

# ---------------------------------------------------------------------------------------------
# Last, so a plain `docker build .` gives the balancer.
FROM runtime AS balancer
COPY --from=build /src/dist/apps/balancer ./dist/apps/balancer
ENV PORT=11434
EXPOSE 11434
USER 1000:1000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||11434)+'/health/ready',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
CMD ["node", "dist/apps/balancer/src/main.js"]
