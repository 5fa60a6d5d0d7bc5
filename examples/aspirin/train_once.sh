# Sourced by run.sh and run_condensed.sh (needs $out, $venv and a `stamp` function):
#   train_once STEP YAML RUN_NAME
# trains YAML into out/RUN_NAME unless a finished run is there (RETRAIN=1 trains again); a run killed
# half-way is resumed (--resume); a finished run is marked with out/RUN_NAME/finished.
train_once() {
  local step=$1 yaml=$2 run=$3
  if [ -f "$out/$run/best.pth" ] && [ -f "$out/$run/finished" ] && [ "${RETRAIN:-0}" != 1 ]; then
    stamp "$step train: found a finished run in out/$run (RETRAIN=1 to train again)"
    return
  fi
  stamp "$step train: deqformer-train $yaml (max 40 min)"
  local resume=()
  [ -f "$out/$run/last.pth" ] && [ "${RETRAIN:-0}" != 1 ] && resume=(--resume)
  [ "${RETRAIN:-0}" = 1 ] && rm -rf "${out:?}/$run"
  "$venv/deqformer-train" "$yaml" "${resume[@]}"
  touch "$out/$run/finished"
}
