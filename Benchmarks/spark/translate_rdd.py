#!/usr/bin/env python3
"""`quill translate` over a corpus through Apache Spark's RDD.pipe (local mode), compared line for
line with one single-process run of the same command.

    translate_rdd.py CORPUS QUILL MODEL [--partitions N] [--batch-size B] [--beam K]

Spark hands each partition's lines to its own `quill translate` process on stdin and reads one
translation per line back; partitions keep their order, so collecting them gives the corpus'
translations in order. Quill translates each line independently of its batch (the seq2seq search is
batch-invariant), so the result must equal the single-process run exactly.
"""
import argparse
import shlex
import subprocess
import sys
import time

from pyspark import SparkConf, SparkContext


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("quill")
    parser.add_argument("model")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beam", type=int, default=1)
    args = parser.parse_args()
    command = [args.quill, "translate", "-m", args.model, "-t", "1", "--beam", str(args.beam),
               "--batch-size", str(args.batch_size), "--max-length", "24"]
    lines = open(args.corpus, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()

    start = time.perf_counter()
    single = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    single_lines = single.stdout.split("\n")[:-1]
    single_seconds = time.perf_counter() - start

    conf = SparkConf().setMaster(f"local[{args.partitions}]").setAppName("quill-translate")
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    try:
        start = time.perf_counter()
        rdd = sc.parallelize(lines, args.partitions)
        spark_lines = rdd.pipe(" ".join(shlex.quote(c) for c in command)).collect()
        spark_seconds = time.perf_counter() - start
    finally:
        sc.stop()

    same = spark_lines == single_lines
    print(f"{len(lines)} lines; single process {single_seconds:.1f} s; Spark local[{args.partitions}] "
          f"{spark_seconds:.1f} s; identical line for line: {same}")
    if not same:
        for i, (a, b) in enumerate(zip(single_lines, spark_lines)):
            if a != b:
                print(f"first difference at line {i + 1}:\n  single: {a!r}\n  spark:  {b!r}")
                break
        print(f"line counts: single {len(single_lines)}, spark {len(spark_lines)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
