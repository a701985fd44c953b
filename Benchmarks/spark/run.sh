#!/usr/bin/env bash
# Runs `quill translate` over a corpus through Spark's RDD.pipe in local mode and checks that the
# output is identical, line for line, to one single-process run.
#
#   Benchmarks/spark/run.sh [MODEL_DIR] [LINES]
#
# Needs a JRE (apt-get install -y openjdk-17-jre-headless) and PySpark (pip, in a venv made here).
# The default model is the tiny random Marian test checkpoint, which needs no download; any Marian /
# T5 / BART folder works (e.g. the opus-mt-shaped one from Weights/make-opus-mt-shaped.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-Tests/QuillModelsTests/Fixtures/seq2seq/tiny-marian}
LINES=${2:-400}
WORK=${WORK:-/tmp/quill-spark}
QUILL=${QUILL:-$PWD/.build/release/quill}
mkdir -p "$WORK"
command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
[ -x "$WORK/venv/bin/python" ] || { python3 -m venv "$WORK/venv"; "$WORK/venv/bin/pip" install -q pyspark; }
# A corpus of sentences of varied length, the same every run.
python3 - "$LINES" > "$WORK/corpus.txt" <<'PY'
import random, sys
rng = random.Random(7)
words = "the house is small and the garden is green . a cat sat on the mat while it rained".split()
for _ in range(int(sys.argv[1])):
    print(" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))))
PY
"$WORK/venv/bin/python" Benchmarks/spark/translate_rdd.py "$WORK/corpus.txt" "$QUILL" "$MODEL" --partitions 4
