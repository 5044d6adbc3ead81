#!/usr/bin/env bash
# Runs pytest from the project's virtualenv with the durations report CI prints.
# pytest's exit code 5 means "no tests collected": with a selection (-m, -k) that is a
# legitimate outcome, so it is reported and turned into success; any other code stands.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/python -m pytest --durations=15 "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "run-tests: pytest collected no tests for this selection (exit 5), treated as success"
  exit 0
fi
exit $rc
