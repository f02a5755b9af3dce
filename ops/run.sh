#!/usr/bin/env bash
# Set everything up (skipping what is installed) and run the appliance with the embedded local
# models: kiosk page on http://127.0.0.1:8080 . Config: $APPLIANCE_CONFIG or config.example.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/setup.sh
mkdir -p var
exec .venv/bin/appliance run --config "${APPLIANCE_CONFIG:-config.example.toml}" "$@"
