# Shared by scripts/dev and scripts/test: create .venv and install the project into it,
# re-installing only when pyproject.toml changed.
VENV="${VENV:-.venv}"
ensure_venv() {
  local extras="${1:-}"
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is required (found: $("$python" --version 2>&1))." >&2
    exit 1
  fi
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
  local stamp="$VENV/.installed-${extras:-base}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ sdk/pyproject.toml -nt "$stamp" ]; then
    echo "• Installing dependencies into $VENV…"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    if [ -n "$extras" ]; then
      "$VENV/bin/python" -m pip install -q ".[$extras]"
    else
      "$VENV/bin/python" -m pip install -q .
    fi
    # The Python SDK and the `agentmarket` command (sdk/, docs/sdk.md): editable, so the tests
    # exercise the working tree's copy.
    "$VENV/bin/python" -m pip install -q -e ./sdk
    touch "$stamp"
  fi
}
