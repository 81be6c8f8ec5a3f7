#!/usr/bin/env bash
# Run on the GPU lease machine (second call; see prepare.sh): the two 7-slice liver-window
# networks of training/CT_MODEL_HISTORY.md, continued from the shipped demo package for as many
# epochs as one 10-minute call allows, since every CPU-length run so far tied with 0.4.2. It
# writes both member packages and their logs to $OUT (at most 8 files come back); choosing and
# shipping happen afterwards on CPU by the rule in CT_MODEL_HISTORY.md. Every size and budget is
# an environment variable, so tests/training/test_gpu_lease.py runs the same script on CPU tiny.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder that comes back}"
WORK=${WORK:-/tmp/lease}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
TOTAL_MINUTES=${TOTAL_MINUTES:-9.2}     # the whole script, data included
WORKERS=${WORKERS:-$(( $(nproc) > 4 ? $(nproc) - 3 : 1 ))}
SAMPLES=${SAMPLES:-24000}               # crops per epoch (CPU runs: 3000-4000)
PLAIN_SAMPLES=${PLAIN_SAMPLES:-8000}    # the FCN's plain-loss recalibration, as on CPU: 2 x 4000
BATCH=${BATCH:-16}
CROP=${CROP:-128}
INIT=${INIT:-pipeline/models/packages/demo-ct-pet}
# extra CT noise, correlated like a scanner's: white-noise-only training calls its blobs lesions
read -r -a AUG <<<"${AUG:---aug-noise-hu 10 --aug-noise-grain 5}"
TRAIN_SETS=${TRAIN_SETS:-"80:0:64,192,192 40:2000:80,256,256 20:4000:96,320,320 8:6000:120,512,512 40:8000:64,192,192"}
VAL_SET=${VAL_SET:-"16:50000:64,192,192"}  # the first 16 of VAL, as in the CPU runs
started=$(date +%s)
left() { "$PY" -c "print(round(max(0.0, $TOTAL_MINUTES - ($(date +%s) - $started) / 60), 2))"; }
share() { "$PY" -c "print(round(max(0.05, $(left) * $1 - $2), 2))"; }
log() { echo "[$(date +%T)] $*"; }

if [ -f /tmp/kit/part.00 ]; then  # the lease: half A parked by call 1, half B carried now
    log "installing the carried wheels"
    cat /tmp/kit/part.00 .kit/b/part.* | tar -x -C /tmp || exit 3
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site /tmp/wheels/*.whl || exit 3
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-200}  # logs are files: no wrapped errors
vpet() { "$PY" -m dicom_node.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

make_set() {  # FOLDER "N:SEED:SHAPE ..."
    for spec in $2; do
        IFS=: read -r n seed shape <<<"$spec"
        vpet phantoms make --cases "$n" --seed "$seed" --shape "$shape" --workers "$WORKERS" \
            --out "$1/s$seed" >/dev/null || exit 4
    done
}
log "phantoms"; make_set "$WORK/train" "$TRAIN_SETS"; make_set "$WORK/val" "$VAL_SET"
COMMON=(--cache-dir "$WORK/cache" --data "$WORK/train" --val-data "$WORK/val" --batch "$BATCH"
        --crop "$CROP" --context 7 --spacing 2 --augment "${AUG[@]}" --workers "$WORKERS"
        --extra-window=-5,145 --device "$DEVICE" --lr 0.0001 --negative-p 0.3
        --negative-studies 12)
FCN_NET=(--width 0.25 --fc-channels 256 --dropout 0.1 --batch-norm)

keep() {  # NAME: copy a finished package into $OUT at once (a call cut at its limit keeps it)
    [ -f "$WORK/$1/manifest.json" ] || return 0
    mkdir -p "$OUT/$1" && cp "$WORK/$1/manifest.json" "$WORK/$1/model.safetensors" "$OUT/$1/"
}
# Budgets: the FCN half of what is left, less its plain-loss tail; the cGAN the rest, less one
# epoch's overrun, loading the pair cache and the export (a trainer stops after the epoch that
# passes its budget; the FCN builds the cache before its clock starts, and the cGAN gets less).
minutes=$(share 0.5 0.6)
log "FCN, SUV-weighted ($minutes min)"
vpet train fcn "${COMMON[@]}" "${FCN_NET[@]}" --out "$WORK/fcn" --init "$INIT" \
    --input-lr-factor 20 --samples-per-epoch "$SAMPLES" --epochs 1000 --loss weighted \
    --weight-floor 1.0 --lesion-p 0.25 --positive-p 0.2 --average-last 3 --seed 91 \
    --max-minutes "$minutes" >"$OUT/fcn.log" 2>&1 || log "FCN failed: $OUT/fcn.log"
log "FCN, plain loss"
vpet train fcn "${COMMON[@]}" "${FCN_NET[@]}" --out "$WORK/fcnp" --init "$WORK/fcn" \
    --samples-per-epoch "$(( PLAIN_SAMPLES / 2 ))" --epochs 2 --loss plain --weight-floor 0.0 \
    --lesion-p 0.15 --seed 92 >"$OUT/fcnp.log" 2>&1 || log "plain FCN failed: $OUT/fcnp.log"
keep fcnp
minutes=$(share 1.0 1.5)
log "cGAN ($minutes min)"
vpet train pix2pix "${COMMON[@]}" --out "$WORK/cgan" --init "$INIT" --input-lr-factor 20 \
    --samples-per-epoch "$SAMPLES" --epochs 1000 --ngf 16 --ndf 16 --num-downs 5 --loss weighted \
    --weight-floor 1.0 --lesion-p 0.3 --positive-p 0.15 --average-last 2 --seed 93 \
    --max-minutes "$minutes" >"$OUT/cgan.log" 2>&1 || log "cGAN failed: $OUT/cgan.log"
keep cgan  # what comes back: 2 packages (2 files each) and 3 logs
log "done, $(left) of $TOTAL_MINUTES min left"
[ -f "$OUT/fcnp/manifest.json" ] && [ -f "$OUT/cgan/manifest.json" ]
