#!/usr/bin/env bash
# Set everything up (skipping what is installed) and run the appliance with the embedded local
# models: kiosk page on http://127.0.0.1:8080 .
# Config: $APPLIANCE_CONFIG, else var/config.toml, made on the first run from config.example.toml
# (with its FAQ copied to var/faq.md), so that settings and FAQ edits saved from the admin page
# land in var/ and never in the tracked examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/setup.sh
mkdir -p var
if [ -z "${APPLIANCE_CONFIG:-}" ]; then
  APPLIANCE_CONFIG=var/config.toml
  if [ ! -f var/config.toml ]; then
    cp appliance/data/sample_faq.md var/faq.md
    # Relative paths in a config resolve against its own directory (var/).
    sed -e 's|"appliance/data/sample_faq.md"|"faq.md"|' -e 's|"var/appliance.db"|"appliance.db"|' \
      config.example.toml >var/config.toml
    echo "[run] first run: made var/config.toml and var/faq.md from the examples (edit them, or use /admin)"
  fi
fi
exec .venv/bin/appliance run --config "$APPLIANCE_CONFIG" "$@"
