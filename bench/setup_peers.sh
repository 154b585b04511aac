#!/usr/bin/env bash
# Set up the peer tools the benchmark compares against, each in its own venv under
# bench/venvs/ (git-ignored).  Idempotent: a venv whose marker file exists is left alone.
#
#   bench/setup_peers.sh            # both peers
#   bench/setup_peers.sh nfstream   # one peer
#
# PYTHON selects the interpreter for the venvs (default: python3.11, else python3).
# A peer that fails to install does not stop the other; its pip log is kept in
# bench/venvs/<peer>.log and the harness reports the peer as "not installed".
set -u
cd "$(dirname "$0")"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mkdir -p venvs

# name -> pip requirements.  cicflowmeter needs scapy 2.5.0 and numpy<2 or it writes an empty
# CSV (its flow session relies on scapy 2.5 internals).
declare -A REQS=(
  [nfstream]="nfstream"
  [cicflowmeter]="cicflowmeter scapy==2.5.0 numpy<2"
)

setup_one() {
  local name="$1" venv="venvs/$1" log="venvs/$1.log"
  if [[ -f "$venv/.ok" ]]; then
    echo "$name: already set up ($venv)"
    return 0
  fi
  rm -rf "$venv"
  echo "$name: creating $venv with $PY"
  if ! "$PY" -m venv "$venv" >"$log" 2>&1; then
    echo "$name: venv creation failed, see bench/$log" >&2
    return 1
  fi
  # shellcheck disable=SC2086  # word splitting of the requirement list is intended
  if "$venv/bin/python" -m pip install --disable-pip-version-check -q ${REQS[$name]} >>"$log" 2>&1; then
    "$venv/bin/python" -m pip freeze >"$venv/.ok"
    echo "$name: installed ($(grep -i "^$name==" "$venv/.ok"))"
  else
    echo "$name: pip install failed, last lines of bench/$log:" >&2
    tail -n 5 "$log" >&2
    return 1
  fi
}

peers=("$@")
[[ ${#peers[@]} -eq 0 ]] && peers=(nfstream cicflowmeter)
rc=0
for p in "${peers[@]}"; do
  if [[ -z "${REQS[$p]+x}" ]]; then
    echo "unknown peer: $p (known: ${!REQS[*]})" >&2
    rc=2
    continue
  fi
  setup_one "$p" || rc=1
done
exit $rc
