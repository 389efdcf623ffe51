#!/usr/bin/env bash
# Validates the deployment files without a Docker engine (CI has none):
#   1. docker-compose.yml: `docker-compose config -q` (Debian's docker-compose 1.29, installed
#      with apt-get when missing), with .env.example as the env file; and it must refuse to
#      render without the secrets.
#   2. Invariants a schema cannot see: healthchecks everywhere, only the balancer published,
#      one distinct GPU per Ollama with its agent on the same GPU, stop_grace_period above
#      DRAIN_TIMEOUT_MS, backend/agent URLs that name compose services, build targets that
#      exist as Dockerfile stages; again with the replicas profile's documented settings (one
#      REDIS_URL naming the redis service on every balancer, HAProxy's servers = the balancers,
#      a /health/ready check, distinct host ports) and `haproxy -c` on deploy/compose/haproxy.cfg.
#   3. The apps' own validators accept the rendered settings (balancer: loadBalancerConfig on
#      the mounted JSON and the environment; agents: parseAgentConfig), through ts-node.
#   3b. deploy/kubernetes (kustomization): every object against the Kubernetes 1.33 schemas
#      (kubernetes-models 4.5), unknown fields included, plus invariants (tools/deploy-check):
#      names, keys, selectors and ports that resolve, probes on routes the apps serve, drain timing,
#      the balancer's PDB, the GPU agent's runtime; the apps' validators accept each container's env.
#   4. Every Dockerfile: dockerfile-utils lint (any error or warning fails) and every COPY
#      source exists and is not excluded by .dockerignore.
# Options:
#   --smoke   also rehearse the image build outside Docker: stage the build context as
#             .dockerignore allows, run the build stage's steps (npm ci, npm run build,
#             npm prune), assemble each runtime stage's files and boot both apps from them
#             (needs the npm registry; about a minute).
# Env: DEPLOY_ENV_FILE (default .env.example) is the env file compose renders with.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

COMPOSE_FILE=docker-compose.yml
ENV_FILE=${DEPLOY_ENV_FILE:-.env.example}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }

# --- 0. tools ---------------------------------------------------------------------------------
if ! command -v docker-compose >/dev/null 2>&1; then
  step "installing docker-compose (apt-get)"
  if [ "$(id -u)" != 0 ]; then echo "docker-compose is missing and this is not root: apt-get install docker-compose" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  # --no-install-recommends: docker-compose recommends docker.io, an engine we cannot run here.
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose; } >"$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log" >&2; echo "apt-get install docker-compose failed" >&2; exit 1; }
fi
docker-compose version --short
# The interpreter docker-compose runs on has PyYAML; use it for the invariant checks.
PY=$(head -n1 "$(command -v docker-compose)" | sed -n 's/^#! *\([^ ]*python[^ ]*\).*/\1/p')
[ -n "$PY" ] || PY=python3
"$PY" -c 'import yaml' 2>/dev/null || { echo "no PyYAML for $PY" >&2; exit 1; }
[ -x node_modules/.bin/dockerfile-utils ] || { echo "node_modules/.bin/dockerfile-utils missing: run npm ci" >&2; exit 1; }
[ -f "$ENV_FILE" ] || { echo "env file $ENV_FILE not found" >&2; exit 1; }

# Files in the Docker build context: git's tracked and unignored files, minus .dockerignore,
# by Docker's rule (the last pattern matching the path or one of its parents decides).
cat >"$WORK/context.py" <<'PY'
import os, re, subprocess
def _compile(p):
    rx, i = '', 0
    while i < len(p):
        if p.startswith('**/', i): rx += '(?:.*/)?'; i += 3
        elif p.startswith('**', i): rx += '.*'; i += 2
        elif p[i] == '*': rx += '[^/]*'; i += 1
        elif p[i] == '?': rx += '[^/]'; i += 1
        else: rx += re.escape(p[i]); i += 1
    return re.compile(rx + r'\Z')
PATTERNS = []
if os.path.exists('.dockerignore'):
    for line in open('.dockerignore'):
        line = line.strip()
        if line and not line.startswith('#'):
            neg = line.startswith('!')
            PATTERNS.append((_compile(os.path.normpath(line.lstrip('!').strip()).lstrip('/')), neg))
def excluded(path):
    parts = path.split('/')
    prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for rx, neg in PATTERNS:
        if any(rx.match(p) for p in prefixes): result = not neg
    return result
def context_files():
    files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return [f for f in files if os.path.isfile(f) and not excluded(f)]
PY

# --- 1. compose -------------------------------------------------------------------------------
step "docker-compose config -q ($COMPOSE_FILE, env file $ENV_FILE)"
if docker-compose --env-file "$ENV_FILE" -f "$COMPOSE_FILE" config -q; then
  echo "ok"
else
  fail "docker-compose config rejected $COMPOSE_FILE"
fi
docker-compose --env-file "$ENV_FILE" -f "$COMPOSE_FILE" config >"$WORK/compose.yml" 2>"$WORK/compose.err" || true

step "compose refuses to render without AGENT_TOKEN / ADMIN_TOKEN"
: >"$WORK/empty.env"
if env -u AGENT_TOKEN -u ADMIN_TOKEN docker-compose --env-file "$WORK/empty.env" -f "$COMPOSE_FILE" config -q 2>"$WORK/nosecret.err"; then
  fail "compose rendered with no tokens set (expected \${AGENT_TOKEN:?...})"
elif grep -q 'AGENT_TOKEN\|ADMIN_TOKEN' "$WORK/nosecret.err"; then
  echo "ok: $(tail -n1 "$WORK/nosecret.err" | sed "s/.*in service/refused: service/")"
else
  fail "compose failed without tokens, but not because of them: $(cat "$WORK/nosecret.err")"
fi
if git ls-files --error-unmatch .env >/dev/null 2>&1; then fail ".env is tracked by git: it holds secrets"; fi

# --- 2. invariants ----------------------------------------------------------------------------
cat >"$WORK/invariants.py" <<'PY'
import json, os, re, sys, glob
import yaml

work = sys.argv[1]
problems = []
def bad(msg): problems.append(msg)

def seconds(v):
    """Compose durations: 45s, 1m30s, 500ms, or a bare number of seconds."""
    if isinstance(v, (int, float)): return float(v)
    total, s = 0.0, str(v)
    for n, unit in re.findall(r'([\d.]+)(h|ms|m|s|us|ns)', s):
        total += float(n) * {'h': 3600, 'm': 60, 's': 1, 'ms': 1e-3, 'us': 1e-6, 'ns': 1e-9}[unit]
    if not re.fullmatch(r'([\d.]+(h|ms|m|s|us|ns))+', s): bad(f'cannot read duration {s!r}')
    return total

# Dockerfile stages, for build targets.
stages = {}
for df in sorted(set(glob.glob('**/Dockerfile', recursive=True) + glob.glob('**/*.Dockerfile', recursive=True))):
    if df.startswith(('node_modules/', 'dist/')): continue
    stages[df] = re.findall(r'(?im)^\s*FROM\s+\S+\s+AS\s+(\S+)\s*$', open(df).read())

try:
    compose = yaml.safe_load(open(os.path.join(work, sys.argv[2])))
except Exception as e:
    print(f'  cannot read rendered compose file: {e}')
    sys.exit(1)
services = (compose or {}).get('services') or {}
if not services: bad('compose: no services rendered')
env_of = {n: {k: ('' if v is None else str(v)) for k, v in (s.get('environment') or {}).items()} for n, s in services.items()}

def gpu_ids(svc):
    ids = []
    for d in (((svc.get('deploy') or {}).get('resources') or {}).get('reservations') or {}).get('devices') or []:
        if d.get('driver') == 'nvidia' and 'gpu' in (d.get('capabilities') or []):
            ids += [str(i) for i in d.get('device_ids') or []]
    return ids

ollama_gpu = {}
agents, balancers, lbs = [], [], []
for name, s in services.items():
    hc = s.get('healthcheck') or {}
    if hc.get('disable') or not hc.get('test'): bad(f'{name}: no healthcheck')
    b = s.get('build') or {}
    target = b.get('target') if isinstance(b, dict) else None
    if b:
        df = os.path.relpath(os.path.join(b.get('context', '.'), b.get('dockerfile', 'Dockerfile')))
        if df not in stages: bad(f'{name}: Dockerfile {df} not found')
        elif target and target not in stages[df]: bad(f'{name}: build target {target!r} is not a stage of {df} ({", ".join(stages[df])})')
    image = str(s.get('image', ''))
    if image.startswith('ollama/ollama'):
        ids = gpu_ids(s)
        if len(ids) != 1: bad(f'{name}: needs exactly one reserved nvidia GPU (deploy.resources.reservations.devices), has {ids}')
        else: ollama_gpu[name] = ids[0]
        if not env_of[name].get('OLLAMA_HOST', '').startswith('0.0.0.0'): bad(f'{name}: OLLAMA_HOST must listen on 0.0.0.0')
        if not any(':/root/.ollama' in str(v) for v in s.get('volumes') or []): bad(f'{name}: no volume for /root/.ollama (models would be lost)')
    if target == 'gpu-agent': agents.append(name)
    if target == 'balancer': balancers.append(name)
    if image.startswith('haproxy'): lbs.append(name)
    if s.get('ports') and target != 'balancer' and not image.startswith('haproxy'): bad(f'{name}: publishes ports; only the balancer (and the HAProxy in front of replicas) should')

dup = [g for g in set(ollama_gpu.values()) if list(ollama_gpu.values()).count(g) > 1]
if dup: bad(f'Ollama services share GPU(s) {dup}')
for a in agents:
    host = re.sub(r'^https?://', '', env_of[a].get('OLLAMA_HOST', '')).split(':')[0]
    if host not in ollama_gpu: bad(f'{a}: OLLAMA_HOST {env_of[a].get("OLLAMA_HOST")!r} is not an Ollama service')
    elif gpu_ids(services[a]) != [ollama_gpu[host]]: bad(f'{a}: reserves GPU {gpu_ids(services[a])}, its Ollama {host} has {ollama_gpu[host]}')
    if env_of[a].get('NVIDIA_DRIVER_CAPABILITIES') != 'utility': bad(f'{a}: NVIDIA_DRIVER_CAPABILITIES should be utility')
    if env_of[a].get('NVIDIA_VISIBLE_DEVICES') not in (None, ollama_gpu.get(host)): bad(f'{a}: NVIDIA_VISIBLE_DEVICES differs from its reserved GPU')
# One balancer outside any profile (what `docker compose up` starts); more only as replicas in a
# profile, behind an HAProxy of the same profile whose servers are exactly the balancers, all with
# the same REDIS_URL (checked with the profile's env below).
plain = [b for b in balancers if not services[b].get('profiles')]
if len(plain) != 1: bad(f'expected one balancer service outside profiles, found {plain}')
published = {}
for name, s in services.items():
    for p in s.get('ports') or []:
        hp = str(p.get('published') if isinstance(p, dict) else str(p).rsplit(':', 2)[-2])
        if hp in published: bad(f'{name} and {published[hp]} both publish host port {hp}')
        published[hp] = name
if len(balancers) > 1:
    profiles = {tuple(services[b].get('profiles') or []) for b in balancers if b not in plain}
    if len(lbs) != 1: bad(f'{len(balancers)} balancer services need one HAProxy in front of them, found {lbs}')
    for lb in lbs:
        lbp = tuple(services[lb].get('profiles') or [])
        if {lbp} != profiles: bad(f'{lb}: profiles {list(lbp)} differ from the replicas\' {sorted(profiles)}')
        cfg = None
        for v in services[lb].get('volumes') or []:
            parts = v.split(':') if isinstance(v, str) else [v.get('source'), v.get('target')]
            if len(parts) >= 2 and parts[1].endswith('haproxy.cfg'): cfg = parts[0]
        if not cfg or not os.path.isfile(cfg): bad(f'{lb}: no haproxy.cfg mounted from the repository'); continue
        text = open(cfg).read()
        servers = {m.group(1): m.group(2) for m in re.finditer(r'(?m)^\s*server\s+\S+\s+([^:\s]+):(\d+)', text)}
        if set(servers) != set(balancers): bad(f'{cfg}: servers {sorted(servers)} are not the balancer services {sorted(balancers)}')
        for host, port in servers.items():
            if host in env_of and env_of[host].get('PORT') and env_of[host]['PORT'] != port: bad(f'{cfg}: server {host}:{port}, but {host} listens on {env_of[host]["PORT"]}')
        if not re.search(r'(?m)^\s*option\s+httpchk\s+GET\s+/health/ready\s*$', text): bad(f'{cfg}: needs option httpchk GET /health/ready (a draining replica must stop getting requests)')
        hc = ' '.join(map(str, (services[lb].get('healthcheck') or {}).get('test') or []))
        m = re.search(r'(?m)^\s*monitor-uri\s+(\S+)', text)
        if not m or m.group(1) not in hc: bad(f'{lb}: its healthcheck should GET the monitor-uri of {cfg}')
    redis_urls = {env_of[b].get('REDIS_URL', '<unset>') for b in balancers}
    if len(redis_urls) != 1: bad(f'balancer replicas differ in REDIS_URL: {sorted(redis_urls)}')
    elif os.environ.get('CHECK_REPLICAS') == '1':
        url = next(iter(redis_urls))
        host = re.sub(r'^rediss?://([^@/]*@)?', '', url).split(':')[0].split('/')[0]
        if not url: bad('with the replicas profile, REDIS_URL must be set (every replica shares it)')
        elif host not in services or not str(services[host].get('image', '')).startswith('redis'): bad(f'REDIS_URL {url!r}: host {host!r} is not a redis service of this file')

checks = {'agents': {a: env_of[a] for a in agents}, 'balancers': {}}
for bname in balancers:
    s, env = services[bname], env_of[bname]
    drain = int(env.get('DRAIN_TIMEOUT_MS') or 30000) / 1000
    grace = seconds(s.get('stop_grace_period', '10s'))
    if grace < drain + 5: bad(f'{bname}: stop_grace_period {grace:g}s must exceed DRAIN_TIMEOUT_MS ({drain:g}s) by 5s or more')
    if str(s.get('stop_signal', 'SIGTERM')) != 'SIGTERM': bad(f'{bname}: stop_signal must be SIGTERM (the balancer drains on it)')
    deps = s.get('depends_on') or {}
    for o in ollama_gpu:
        if (deps.get(o) or {}).get('condition') != 'service_healthy': bad(f'{bname}: depends_on {o} should be condition: service_healthy')
    cfg = env.get('BALANCER_CONFIG')
    host_cfg = None
    for v in s.get('volumes') or []:
        parts = v.split(':') if isinstance(v, str) else [v.get('source'), v.get('target')]
        if cfg and len(parts) >= 2 and parts[1] == cfg: host_cfg = parts[0]
    if cfg and not host_cfg: bad(f'{bname}: BALANCER_CONFIG={cfg} is not a mounted file')
    elif host_cfg and not os.path.isfile(host_cfg): bad(f'{bname}: {host_cfg} (BALANCER_CONFIG) does not exist')
    elif host_cfg:
        data = json.load(open(host_cfg))
        for i, be in enumerate(data.get('backends') or []):
            for key in ('url', 'agentUrl'):
                if key in be:
                    h = re.sub(r'^https?://', '', be[key]).split(':')[0].split('/')[0]
                    if h not in services: bad(f'{host_cfg}: backends[{i}].{key} host {h!r} is not a compose service')
            if 'agentToken' in be: bad(f'{host_cfg}: backends[{i}].agentToken: keep secrets in .env (AGENT_TOKEN), not in the committed file')
        urls = {re.sub(r'^https?://', '', be.get('url', '')).split(':')[0] for be in data.get('backends') or []}
        missing = set(ollama_gpu) - urls
        if missing: bad(f'{host_cfg}: Ollama service(s) {sorted(missing)} are not backends')
        mlm = {be.get('maxLoadedModels') for be in data.get('backends') or []}
        olm = {env_of[o].get('OLLAMA_MAX_LOADED_MODELS') for o in ollama_gpu}
        if len(olm) == 1 and mlm != {int(next(iter(olm)))}: bad(f'{host_cfg}: maxLoadedModels {sorted(mlm, key=str)} differ from OLLAMA_MAX_LOADED_MODELS {olm}')
        env = dict(env, BALANCER_CONFIG=host_cfg)
    checks['balancers'][bname] = env

json.dump(checks, open(os.path.join(work, sys.argv[3]), 'w'))
for p in problems: print(f'  {p}')
print('ok' if not problems else f'{len(problems)} problem(s)')
sys.exit(1 if problems else 0)
PY
step "deployment invariants"
"$PY" "$WORK/invariants.py" "$WORK" compose.yml checks.json || failures=$((failures + 1))

# The replicas profile with the settings .env.example documents for it: three balancers sharing
# one REDIS_URL behind HAProxy (haproxy -c checks its file where haproxy is installed; CI has it).
step "deployment invariants, profile replicas (COMPOSE_PROFILES=replicas, REDIS_URL=redis://redis:6379/0)"
{ cat "$ENV_FILE"; printf '\nCOMPOSE_PROFILES=replicas\nREDIS_URL=redis://redis:6379/0\n'; } >"$WORK/replicas.env"
if docker-compose --env-file "$WORK/replicas.env" -f "$COMPOSE_FILE" config >"$WORK/compose-replicas.yml" 2>"$WORK/replicas.err"; then
  CHECK_REPLICAS=1 "$PY" "$WORK/invariants.py" "$WORK" compose-replicas.yml checks-replicas.json || failures=$((failures + 1))
else
  cat "$WORK/replicas.err" >&2; fail "docker-compose config rejected $COMPOSE_FILE with the replicas profile"
fi
HAPROXY=$(command -v haproxy || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; } || true)
if [ -n "$HAPROXY" ]; then
  if out=$("$HAPROXY" -c -f deploy/compose/haproxy.cfg 2>&1) && ! grep -q WARNING <<<"$out"; then
    echo "ok: haproxy -c deploy/compose/haproxy.cfg ($("$HAPROXY" -v | head -n1 | cut -d' ' -f1-3))"
  else
    printf '%s\n' "$out"; fail "deploy/compose/haproxy.cfg: haproxy -c reported problems"
  fi
else
  echo "skipped: haproxy -c (haproxy not installed; sh tools/bench/ensure-peers.sh installs it)"
fi

# --- 3. the apps' own validators --------------------------------------------------------------
step "settings accepted by the apps' validators (loadBalancerConfig, parseAgentConfig)"
if [ -f "$WORK/checks.json" ]; then
  TS_NODE_TRANSPILE_ONLY=1 node -r ts-node/register -r tsconfig-paths/register - "$WORK/checks.json" "$WORK/checks-replicas.json" <<'JS' || failures=$((failures + 1))
const fs = require('fs');
const path = require('path');
const os = require('os');
const checks = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { loadBalancerConfig } = require(path.resolve('apps/balancer/src/config/balancer-config.ts'));
const { parseAgentConfig } = require(path.resolve('apps/gpu-agent/src/config/agent.config.ts'));
let bad = 0;
const attempt = (where, fn) => {
  try { console.log(`  ${where}: ${fn()}`); } catch (e) { bad++; console.log(`  ${where}: ${e.message}`); }
};
for (const [name, env] of Object.entries(checks.balancers)) {
  attempt(`compose ${name}`, () => {
    const c = loadBalancerConfig(env);
    if (c.backends.length === 0) throw new Error('no backends');
    return `${c.backends.map((b) => `${b.name}=${b.url} (agent ${b.agentUrl ?? 'none'}, parallel ${b.parallel})`).join(', ')}; drain ${c.drainTimeoutMs} ms`;
  });
}
for (const [name, env] of Object.entries(checks.agents)) {
  attempt(`compose ${name}`, () => { const c = parseAgentConfig(env); return `port ${c.port}, Ollama ${c.ollamaUrl}`; });
}
// The replicas profile: each replica's settings, and the shared-state settings (REDIS_URL).
const replicas = fs.existsSync(process.argv[3]) ? JSON.parse(fs.readFileSync(process.argv[3], 'utf8')) : { balancers: {} };
const sharedStatePath = path.resolve('apps/balancer/src/shared-state/shared-state-config.ts');
const loadShared = fs.existsSync(sharedStatePath) ? require(sharedStatePath).loadSharedStateConfig : null;
for (const [name, env] of Object.entries(replicas.balancers)) {
  attempt(`compose --profile replicas ${name}`, () => {
    const c = loadBalancerConfig(env);
    const shared = loadShared ? loadShared(env) : null;
    return `${c.backends.length} backend(s); ${shared ? `shared state ${shared.url ?? 'off'}` : 'REDIS_URL not checked (no shared-state config module)'}`;
  });
}
process.exit(bad ? 1 : 0);
JS
else
  fail "invariant step produced no settings to validate"
fi

# --- 3b. Kubernetes ---------------------------------------------------------------------------
step "Kubernetes manifests (deploy/kubernetes): pinned schemas and invariants (tools/deploy-check)"
if TS_NODE_TRANSPILE_ONLY=1 node -r ts-node/register -r tsconfig-paths/register tools/deploy-check/main.ts deploy/kubernetes; then :; else
  fail "deploy/kubernetes: tools/deploy-check found problems"
fi
if git ls-files --error-unmatch deploy/kubernetes/secrets.env >/dev/null 2>&1; then fail "deploy/kubernetes/secrets.env is tracked by git: it holds secrets"; fi

# --- 4. Dockerfiles ---------------------------------------------------------------------------
mapfile -t DOCKERFILES < <(git ls-files --cached --others --exclude-standard -- 'Dockerfile' '*/Dockerfile' '*.Dockerfile' | sort -u)
[ "${#DOCKERFILES[@]}" -gt 0 ] || fail "no Dockerfile found"
for df in "${DOCKERFILES[@]}"; do
  step "dockerfile-utils lint $df"
  out=$(node_modules/.bin/dockerfile-utils lint "$df" 2>&1) && rc=0 || rc=$?
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out"
    fail "$df: dockerfile-utils reported problems (exit $rc)"
  else
    echo "ok: no errors, no warnings"
  fi
done

step "COPY sources exist in the build context (.dockerignore applied)"
"$PY" - "$WORK" "${DOCKERFILES[@]}" <<'PY' || failures=$((failures + 1))
import os, re, sys
sys.path.insert(0, sys.argv[1])
from context import context_files

context = context_files()
bad = 0
for df in sys.argv[2:]:
    text = re.sub(r'\\\n', ' ', open(df).read())
    for line in text.splitlines():
        m = re.match(r'\s*(COPY|ADD)\s+(.*)', line, re.I)
        if not m: continue
        args = [a for a in m.group(2).split() if not a.startswith('--')]
        if any(a.startswith('--from') for a in m.group(2).split()) or len(args) < 2: continue
        for src in args[:-1]:
            src = os.path.normpath(src).lstrip('/')
            hits = [f for f in context if f == src or f.startswith(src + '/')]
            if not hits:
                bad += 1
                print(f'  {df}: COPY {src}: not in the build context (missing, or excluded by .dockerignore)')
            else:
                print(f'  {df}: COPY {src}: {len(hits)} file(s)')
secret_like = [f for f in context if re.search(r'(^|/)\.env$|\.pem$|id_rsa', f)]
for f in secret_like:
    bad += 1
    print(f'  {f}: secret-like file in the build context; exclude it in .dockerignore')
sys.exit(1 if bad else 0)
PY

# --- 5. optional: rehearse the image build without an engine -----------------------------------
if [ "$SMOKE" = 1 ]; then
  step "smoke: stage the build context and run the Dockerfile's build stage outside Docker"
  CTX="$WORK/ctx"
  mkdir -p "$CTX"
  "$PY" - "$WORK" "$CTX" <<'PY'
import os, shutil, sys
sys.path.insert(0, sys.argv[1])
from context import context_files
files = context_files()
for f in files:
    os.makedirs(os.path.join(sys.argv[2], os.path.dirname(f)), exist_ok=True)
    shutil.copy2(f, os.path.join(sys.argv[2], f))
print(f'  {len(files)} files in the build context')
PY
  # Mirrors the build stage of ./Dockerfile (keep the two in step).
  nodedir=$(dirname "$(dirname "$(command -v node)")")
  [ -f "$nodedir/include/node/node_api.h" ] || nodedir=$(npm config get nodedir)
  (
    cd "$CTX"
    export npm_config_nodedir="$nodedir" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
    npm ci --ignore-scripts --loglevel=error
    npm run build >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; exit 1; }
    test -f dist/apps/balancer/src/main.js
    test -f dist/apps/gpu-agent/src/main.js
    test -f libs/nvml/build/Release/nvml.node
    npm prune --omit=dev --loglevel=error
  ) || { fail "smoke: the build stage failed"; exit 1; }
  # Mirrors the runtime stages' COPY lines.
  for target in balancer gpu-agent; do
    R="$WORK/rt-$target"
    mkdir -p "$R/dist/apps" "$R/libs/nvml/build/Release"
    cp "$CTX/package.json" "$R/"; cp -a "$CTX/node_modules" "$R/"; cp -a "$CTX/dist/libs" "$R/dist/libs"
    cp -a "$CTX/dist/apps/$target" "$R/dist/apps/$target"
  done
  cp "$CTX/libs/nvml/build/Release/nvml.node" "$WORK/rt-gpu-agent/libs/nvml/build/Release/"
  rmdir "$WORK/rt-balancer/libs/nvml/build/Release" "$WORK/rt-balancer/libs/nvml/build" "$WORK/rt-balancer/libs/nvml" "$WORK/rt-balancer/libs"
  du -sh "$WORK/rt-balancer" "$WORK/rt-gpu-agent" | sed 's/^/  /'
  probe() { # port path -> HTTP status
    node -e "fetch('http://127.0.0.1:$1$2',{signal:AbortSignal.timeout(2000)}).then(r=>{console.log(r.status)}).catch(()=>console.log('down'))"
  }
  # In the image node is PID 1, where a signal without a handler is ignored, not fatal: Nest
  # re-raises SIGTERM after its shutdown hooks and the process then exits 0 once idle. Run as
  # PID 1 of a new PID namespace (root) to rehearse exactly that; otherwise 143 is also fine.
  PID1=()
  if unshare --pid --fork --kill-child --mount-proc true 2>/dev/null; then PID1=(unshare --pid --fork --kill-child --mount-proc); fi
  # And as the image's user (1000:1000) over root-owned files, so a write outside /tmp fails here too.
  AS_USER=()
  if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    chmod 755 "$WORK"; AS_USER=(setpriv --reuid=1000 --regid=1000 --clear-groups)
  fi
  boot() { # name dir port expected-ready-status env...
    local name=$1 dir=$2 port=$3 want=$4; shift 4
    (cd "$dir" && exec env -i PATH="$PATH" NODE_ENV=production PORT="$port" "$@" "${PID1[@]}" "${AS_USER[@]}" node "dist/apps/$name/src/main.js") >"$WORK/$name.log" 2>&1 &
    local pid=$! live=down ready=down node_pid
    for _ in $(seq 1 50); do live=$(probe "$port" /health/live); [ "$live" = 200 ] && break; sleep 0.2; done
    for _ in $(seq 1 25); do ready=$(probe "$port" /health/ready); [ "$ready" = "$want" ] && break; sleep 0.2; done
    node_pid=$pid
    if [ "${#PID1[@]}" -gt 0 ]; then node_pid=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}'); fi
    kill -TERM "${node_pid:-$pid}" 2>/dev/null; local rc=0; wait "$pid" || rc=$?
    local ok_rc=0; [ "${#PID1[@]}" -gt 0 ] || [ "$rc" != 143 ] || ok_rc=143
    if [ "$live" = 200 ] && [ "$ready" = "$want" ] && [ "$rc" = "$ok_rc" ]; then
      echo "  $name${PID1:+ (PID 1)}${AS_USER:+ (uid 1000)}: /health/live 200, /health/ready $ready, SIGTERM -> exit $rc"
    else
      fail "smoke: $name live=$live ready=$ready (want $want) exit=$rc"; sed 's/^/    /' "$WORK/$name.log" | tail -n 20
    fi
  }
  # No GPU here: the agent must still boot, stay live, and be unready (NVML library not found).
  boot gpu-agent "$WORK/rt-gpu-agent" 19400 503 OLLAMA_HOST=127.0.0.1:1 NVML_LIBRARY_PATH=/nonexistent/libnvidia-ml.so.1
  # With the fake NVML library the same runtime files read a GPU and turn ready.
  cat >"$WORK/fake-nvml.state" <<'EOF'
driver_version=550.54.15
nvml_version=12.550.54.15
gpu_count=1
gpu.0.name=NVIDIA H100 80GB HBM3
gpu.0.uuid=GPU-00000000-0000-0000-0000-000000000001
gpu.0.pci_bus_id=00000000:01:00.0
gpu.0.util_gpu=3
gpu.0.util_memory=1
gpu.0.mem_total=85899345920
gpu.0.mem_used=1073741824
gpu.0.temperature=35
gpu.0.power_usage=70000
gpu.0.power_limit=700000
EOF
  boot gpu-agent "$WORK/rt-gpu-agent" 19400 200 OLLAMA_HOST=127.0.0.1:1 NVML_LIBRARY_PATH="$CTX/libs/nvml/fake/build/libnvidia-ml.so.1" FAKE_NVML_STATE="$WORK/fake-nvml.state" NVML_POLL_INTERVAL_MS=200
  # The balancer from its runtime files, with the compose JSON: live, unready (no backend up).
  boot balancer "$WORK/rt-balancer" 21434 503 BALANCER_CONFIG="$PWD/deploy/compose/balancer.json" DRAIN_TIMEOUT_MS=1000 HEALTH_INTERVAL_MS=200
fi

echo
if [ "$failures" -gt 0 ]; then
  echo "check-deploy: $failures check(s) failed" >&2
  exit 1
fi
echo "check-deploy: all checks passed"
