#!/usr/bin/env python3
"""Mutation campaign on real model and tokenizer files, run as a user would.

Writes mutants of the GGUF models (SmolLM2, Gemma 3 and Qwen2.5 by default: metadata and
tensor-table flips, integers set to 0 / max / negative, truncations, tensor offsets past the end)
and of the seq2seq fixture folders (config.json,
generation_config.json, model.safetensors, tokenizer files), runs `quill complete -m`, `quill
tokenize -m` or `quill translate -m` on each with a 30 s timeout, and counts the outcomes. Every run
must exit 0 or 1 with at most one non-empty stderr line; anything else is listed (with the mutation,
so it can be reproduced) in <work>/failures.jsonl.

    Tests/Mutation/campaign.py N [--gguf-n M] [--gguf FILE ...] [--quill PATH] [--work DIR] [--jobs J] [--seed S]

N mutants per seq2seq target file, M (default N) per GGUF file. Uses QUILL_HUGE_PAGES=0, -n 2 and
-c 64 to keep runs short. A GGUF file of hundreds of MB is never copied per mutant: each worker keeps
one copy, patches bytes of its header in place (only the header is read into memory) and restores
them after the run; a truncated mutant is the header followed by a hole up to the cut (a sparse file).
Every run is appended to <work>/results.jsonl, so an interrupted campaign is still counted. At its end
(also after Ctrl-C or --minutes) a campaign appends its per-target counts to Tests/Mutation/ledger.tsv
(--ledger; --no-ledger for trial runs) and prints the running total of every campaign in the ledger."""
import argparse, datetime, json, os, random, resource, shutil, signal, struct, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

root = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
default_ledger = os.path.join(root, "Tests/Mutation/ledger.tsv")
fixtures = os.path.join(root, "Tests/QuillModelsTests/Fixtures/seq2seq")
models = os.path.expanduser("~/.cache/quill/models")
default_ggufs = [os.path.join(models, f) for f in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf",
                                                  "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]]
EXTREMES = {4: [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], 8: [0, 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64 - 2**20]}

# ---------------------------------------------------------------- GGUF structure (integer fields)
def gguf_fields(data):
    """(offset, size, what) of every integer field in the header, plus the header's end."""
    u32 = lambda o: struct.unpack_from("<I", data, o)[0]
    u64 = lambda o: struct.unpack_from("<Q", data, o)[0]
    fields = [(8, 8, "tensor count"), (16, 8, "kv count")]
    n_tensors, n_kv, off = u64(8), u64(16), 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def string(off, what):
        fields.append((off, 8, what + " length")); return off + 8 + u64(off)
    for _ in range(n_kv):
        key_off = off
        off = string(off, "key")
        key = data[key_off + 8:off].decode(errors="replace")
        fields.append((off, 4, key + " type")); t = u32(off); off += 4
        if t == 8: off = string(off, key)
        elif t == 9:
            fields.append((off, 4, key + " element type")); et = u32(off); off += 4
            fields.append((off, 8, key + " count")); count = u64(off); off += 8
            for i in range(count):
                if et == 8: off = string(off, "%s[%d]" % (key, i)) if i < 4 else off + 8 + u64(off)
                else: off += sizes[et]
        else:
            if t in (4, 5, 10, 11): fields.append((off, sizes[t], key))
            off += sizes[t]
    for _ in range(n_tensors):
        name_off = off
        off = string(off, "tensor name")
        name = data[name_off + 8:off].decode(errors="replace")
        fields.append((off, 4, name + " n_dims")); n = u32(off); off += 4
        for d in range(n): fields.append((off, 8, "%s dim %d" % (name, d))); off += 8
        fields.append((off, 4, name + " type")); off += 4
        fields.append((off, 8, name + " offset")); off += 8
    return fields, off

# ---------------------------------------------------------------- mutations
def mutate_binary(data, rng, fields=None, header_end=None, file_size=None):
    """A mutant as (patches [(offset, bytes)], cut or None, description); `data` is the file (or, for
    a large file, its header of `header_end` bytes, the whole file being `file_size` bytes long).
    `fields`: integer fields to aim at."""
    kind = rng.choice(["flip", "flip", "int", "int", "truncate", "offset"] if fields else ["flip", "flip", "int", "truncate"])
    size_of_file = file_size or len(data)
    limit = header_end or min(len(data), 1 << 16)
    if kind == "flip":
        # Anywhere in the header, or aimed at its first 64 KB or at the tensor table (after a long vocabulary).
        low = 0
        table = [f[0] for f in fields or [] if f[2] == "tensor name length"]
        region = rng.choice(["all", "start", "table"])
        if region == "start": limit = min(limit, 1 << 16)
        elif region == "table" and table: low = table[0]
        patches = {}
        for _ in range(rng.randint(1, 4)):
            o = rng.randrange(low, limit)
            old = patches.get(o, data[o])
            patches[o] = old ^ (1 << rng.randrange(8) if rng.random() < .5 else rng.randrange(1, 256))
        return [(o, bytes([v])) for o, v in sorted(patches.items())], None, "flip bytes at %s" % sorted(patches)
    if kind == "int":
        if fields:
            o, size, what = rng.choice(fields)
        else:
            size = rng.choice([4, 8]); o = rng.randrange(max(1, limit - size)); what = "bytes"
        value = rng.choice(EXTREMES[size])
        return [(o, struct.pack("<I" if size == 4 else "<Q", value))], None, "set %s (offset %d) to %d" % (what, o, value)
    if kind == "offset":
        offsets = [f for f in fields if f[2].endswith(" offset")]
        o, size, what = rng.choice(offsets)
        value = rng.choice([size_of_file, size_of_file + 4096, 2**40, 2**64 - 32])
        return [(o, struct.pack("<Q", value))], None, "set %s to %d (past the end)" % (what, value)
    cut = rng.choice([rng.randrange(limit), rng.randrange(size_of_file)])
    return [], cut, "truncate at %d of %d" % (cut, size_of_file)

def applied(data, patches, cut):
    """`data` with `patches` written over it and cut at `cut`."""
    b = bytearray(data)
    for o, v in patches: b[o:o + len(v)] = v
    return bytes(b if cut is None else b[:cut])

def mutate_json(text, rng):
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if value is None or rng.random() < 0.3:
        patches, cut, what = mutate_binary(text.encode(), rng)
        return applied(text.encode(), patches, cut), "json bytes: " + what
    paths = []
    def walk(v, path):
        if isinstance(v, dict):
            for k, x in v.items(): walk(x, path + [k])
        elif isinstance(v, list):
            for i, x in enumerate(v[:8]): walk(x, path + [i])
        if path: paths.append(path)
    walk(value, [])
    if not paths: return text.encode() + b"x", "json: appended byte"
    path = rng.choice(paths)
    replacement = rng.choice([0, -1, 1, 2**31, -2**31, 2**63 - 1, -2**63, 10**12, 1e308, -0.5, "x", None, [], {}, True])
    target = value
    for p in path[:-1]: target = target[p]
    target[path[-1]] = replacement
    return json.dumps(value).encode(), "json: set %s to %r" % ("/".join(map(str, path)), replacement)

def read_gguf_header(path):
    """The file's first bytes, enough to hold the whole header (metadata and tensor table), its
    integer fields and the header's end; the tensor data is never read."""
    size = 1 << 20
    while True:
        with open(path, "rb") as f:
            data = f.read(size)
        try:
            fields, end = gguf_fields(data)
            return data[:end], fields, end
        except (struct.error, IndexError):
            if len(data) < size: raise ValueError("%s: not a readable GGUF header" % path)
            size *= 4

def safetensors_fields(data):
    n = struct.unpack_from("<Q", data, 0)[0]
    return [(0, 8, "header length")], 8 + n

# ---------------------------------------------------------------- running
def run(args, cwd_input, cpu_seconds=30, wall_seconds=600):
    """The 30 s limit is on CPU time (RLIMIT_CPU, SIGXCPU): on a shared machine, at nice 19, a healthy
    run can wait minutes for a core, while a spinning hang burns CPU. A run blocked without using CPU
    is caught by the wall-clock limit."""
    env = dict(os.environ, QUILL_HUGE_PAGES="0")
    limit = lambda: resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    try:
        p = subprocess.run(args, input=cwd_input, capture_output=True, timeout=wall_seconds, env=env, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return "wall-clock timeout (%d s)" % wall_seconds, ""
    if p.returncode == -24:  # SIGXCPU
        return "cpu timeout (%d s)" % cpu_seconds, p.stderr.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    lines = [l for l in err.split("\n") if l.strip()]
    if p.returncode in (0, 1) and len(lines) <= 1:
        return p.returncode, err
    return ("signal %d" % -p.returncode) if p.returncode < 0 else ("exit %d, %d stderr lines" % (p.returncode, len(lines))), err

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--quill", default=os.path.join(root, ".build/release/quill"))
    ap.add_argument("--gguf", action="append", help="GGUF file to mutate (repeatable; default: SmolLM2, Gemma 3 and Qwen2.5 in %s)" % models)
    ap.add_argument("--gguf-n", type=int, help="mutants per GGUF file (default: N)")
    ap.add_argument("--work", default="/tmp/quill-mutants")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated: gguf, marian, bart, t5, t5-gated")
    ap.add_argument("--minutes", type=float, default=0, help="start no new run after this long (0: no limit)")
    ap.add_argument("--ledger", default=default_ledger, help="campaign ledger to append to (default: %(default)s)")
    ap.add_argument("--no-ledger", action="store_true", help="a trial run: do not append to the ledger")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    counts, lock = {}, threading.Lock()
    failures = open(os.path.join(a.work, "failures.jsonl"), "a")
    results = open(os.path.join(a.work, "results.jsonl"), "a")

    stop = threading.Event()  # set on Ctrl-C: runs killed by it are not counted

    def record(target, what, outcome, err):
        with lock:
            if stop.is_set(): return
            key = outcome if outcome in (0, 1) else "other"
            counts.setdefault(target, {0: 0, 1: 0, "other": 0})[key] += 1
            results.write(json.dumps({"target": target, "outcome": key}) + "\n")
            results.flush()
            done = sum(sum(c.values()) for c in counts.values())
            if done % 250 == 0:
                print("%d runs: %s" % (done, {k: sum(c[k] for c in counts.values()) for k in (0, 1, "other")}), flush=True)
            if key == "other":
                failures.write(json.dumps({"target": target, "mutation": what, "outcome": outcome, "stderr": err[-2000:]}) + "\n")
                failures.flush()
                print("FAIL", target, what, outcome, err.strip().split("\n")[-1][:200], flush=True)

    tasks = []
    only = set(filter(None, a.only.split(",")))
    ggufs = {}  # name -> (path, header bytes, integer fields, file size)
    if not only or "gguf" in only:
        for path in a.gguf or default_ggufs:
            if not os.path.exists(path):
                sys.exit("%s is missing (Weights/fetch fetches the models)" % path)
            header, fields, header_end = read_gguf_header(path)
            name = os.path.basename(path)
            ggufs[name] = (path, header, fields, os.path.getsize(path))
            for i in range(a.gguf_n if a.gguf_n is not None else a.n):
                tasks.append(("gguf:" + name, i))
    folders = {"marian": "tiny-marian", "bart": "tiny-bart", "t5": "tiny-t5", "t5-gated": "tiny-t5-gated"}
    for short, name in folders.items():
        if only and short not in only: continue
        for f in sorted(os.listdir(os.path.join(fixtures, name))):
            if f == "cases.jsonl" or os.path.isdir(os.path.join(fixtures, name, f)): continue
            for i in range(a.n):
                tasks.append((name + "/" + f, i))

    deadline = time.time() + a.minutes * 60 if a.minutes else None
    random.Random(a.seed).shuffle(tasks)  # a run cut short by --minutes still covers every file

    def do(task):
        if stop.is_set() or (deadline and time.time() > deadline): return
        target, i = task
        rng = random.Random("%d %s %d" % (a.seed, target, i))
        slot = os.path.join(a.work, "w%d" % threading.get_ident())
        os.makedirs(slot, exist_ok=True)
        if target.startswith("gguf:"):
            # One copy per worker and file, patched in place and restored after the run.
            name = target[5:]
            source, header, fields, size = ggufs[name]
            path = os.path.join(slot, name)
            if not os.path.exists(path) or os.path.getsize(path) != size:
                shutil.copyfile(source, path)
            patches, cut, what = mutate_binary(header, rng, fields, len(header), size)
            cmd = rng.choice(["complete", "complete", "tokenize"])
            if cut is not None:
                # A truncated copy is the header and then a hole up to the cut: only the header and the
                # length matter to the loader, and writing hundreds of MB per mutant would cost more
                # than the run (tensor data inside the cut reads as zeros).
                path = os.path.join(slot, "truncated-" + name)
                with open(path, "wb") as f:
                    f.write(header[:cut])
                    f.truncate(cut)
            with open(path, "r+b") as f:
                for o, v in patches: f.seek(o); f.write(v)
            args = [a.quill, cmd, "-m", path] + (["-n", "2", "-c", "64", "--temp", "0", "-t", "1"] if cmd == "complete" else [])
            outcome, err = run(args, b"Hello, world")
            with open(path, "r+b") as f:
                for o, v in patches: f.seek(o); f.write(header[o:o + len(v)])
            if cut is not None: os.remove(path)
            record(name + " " + cmd, what, outcome, err)
            return
        name, f = target.split("/")
        folder = os.path.join(slot, name)
        shutil.rmtree(folder, ignore_errors=True); os.makedirs(folder)
        for g in os.listdir(os.path.join(fixtures, name)):
            if g != f: os.symlink(os.path.join(fixtures, name, g), os.path.join(folder, g))
        source = open(os.path.join(fixtures, name, f), "rb").read()
        if f.endswith(".json"):
            data, what = mutate_json(source.decode(), rng)
        elif f.endswith(".safetensors"):
            fl, end = safetensors_fields(source)
            patches, cut, what = mutate_binary(source, rng, None, end)
            data = applied(source, patches, cut)
        else:
            patches, cut, what = mutate_binary(source, rng, None, None)
            data = applied(source, patches, cut)
        open(os.path.join(folder, f), "wb").write(data)
        cmd = rng.choice(["translate", "tokenize"]) if not f.endswith(".safetensors") else "translate"
        args = [a.quill, cmd, "-m", folder] + (["--max-length", "4", "-t", "1"] if cmd == "translate" else [])
        outcome, err = run(args, b"Hello, world.\nA second line.\n")
        record(target + " " + cmd, "%s: %s" % (f, what), outcome, err)

    # Ctrl-C, and SIGINT or SIGTERM sent to a campaign running in the background (where SIGINT starts
    # out ignored), stop it with its counts recorded.
    def interrupt(*_): raise KeyboardInterrupt
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    pool = ThreadPoolExecutor(a.jobs)
    try:
        list(pool.map(do, tasks))
    except KeyboardInterrupt:
        print("interrupted: counting the runs finished so far", flush=True)
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    with lock:
        stop.set()
        total = {0: 0, 1: 0, "other": 0}
        for target in sorted(counts):
            c = counts[target]
            for k in total: total[k] += c[k]
            print("%-45s exit 0: %5d  exit 1: %5d  other: %d" % (target, c[0], c[1], c["other"]))
        print("%-45s exit 0: %5d  exit 1: %5d  other: %d" % ("TOTAL", total[0], total[1], total["other"]))
        if not a.no_ledger and counts:
            append_to_ledger(a.ledger, a.seed, counts)
        if not a.no_ledger and os.path.exists(a.ledger):
            print_ledger_total(a.ledger)
    sys.exit(1 if total["other"] else 0)

def append_to_ledger(path, seed, counts):
    """One tab-separated line per target: date, commit, seed, target, exit0, exit1, other."""
    new = not os.path.exists(path)
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "-"
    except OSError:
        commit = "-"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    with open(path, "a") as f:
        if new: f.write("date\tcommit\tseed\ttarget\texit0\texit1\tother\n")
        for target in sorted(counts):
            c = counts[target]
            f.write("\t".join(map(str, [date, commit, seed, target, c[0], c[1], c["other"]])) + "\n")

def print_ledger_total(path):
    campaigns, total = set(), [0, 0, 0]
    for line in open(path):
        cells = line.rstrip("\n").split("\t")
        if line.startswith("#") or len(cells) != 7 or cells[0] == "date": continue
        campaigns.add(cells[0])
        for i in range(3): total[i] += int(cells[4 + i])
    print("all %d campaigns in %s: %d runs, exit 0: %d, exit 1: %d, other: %d"
          % (len(campaigns), path, sum(total), total[0], total[1], total[2]))

if __name__ == "__main__":
    main()
