#!/usr/bin/env bash
# Fails if Sources/OCPP16/Generated is out of date with ocpp-schemas/v16.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 Scripts/generate-ocpp16.py --check "$@"
