#!/usr/bin/env bash
# The main job on real data: install, fit AI-VAD's velocity model on UCSD Ped2's training clips, then serve Ped2's
# test clips through the pipeline (alerts printed as they happen, JSONL in runs/ped2/) and finish with the
# frame-level AUROC. Data root: $STREAMAD_DATA (default: ../shared/data beside this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export STREAMAD_DATA="${STREAMAD_DATA:-$(cd .. && pwd)/shared/data}"
streamad fit examples/ped2.yaml
streamad serve examples/ped2.yaml
