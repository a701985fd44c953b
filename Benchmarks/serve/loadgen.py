#!/usr/bin/env python3
"""Closed-loop load generator for OpenAI-compatible servers (quill serve, llama-server).

    loadgen.py --url http://127.0.0.1:8080 --concurrency 8 --requests 32 [--shared-prefix 500] [--abort 0.2]

Each of C clients sends streaming /v1/completions requests back to back (a closed loop): a prompt of
128-512 tokens' worth of text, 128 output tokens with ignore_eos. Reports TTFT p50/p99, inter-token
latency p50/p99, aggregate output tok/s and failed requests, as one JSON line.

--shared-prefix N: every prompt starts with the same ~N-token system text, then a different question.
--abort F: a fraction F of requests disconnect after their 8th token (not counted as failures; the
others must not fail). --duration S: run for S seconds instead of a request count (soak).
"""
import argparse
import asyncio
import json
import random
import statistics
import time

import httpx

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will my more out up into do any "
         "time only could new them man some these then two first may over such like other how our what now its "
         "river mountain engine window silver garden letter morning castle winter harbour lantern").split()


def text_of(words, rng):
    return " ".join(rng.choice(WORDS) for _ in range(words))


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def one_request(client, url, prompt, max_tokens, abort_after, stats):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    last = None
    tokens = 0
    try:
        async with client.stream("POST", url + "/v1/completions", json=body, timeout=600) as response:
            if response.status_code != 200:
                stats["failed"] += 1
                stats["errors"].append(response.status_code)
                await response.aread()
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if not chunk.get("choices"):
                    continue
                if chunk["choices"][0].get("text"):
                    now = time.perf_counter()
                    if last is None:
                        stats["ttft"].append(now - start)
                    else:
                        stats["itl"].append(now - last)
                    last = now
                    tokens += 1
                    if abort_after and tokens >= abort_after:
                        stats["aborted"] += 1
                        return  # leaving the context manager closes the connection mid-stream
        stats["completed"] += 1
        stats["output_tokens"] += max_tokens
    except Exception as e:  # noqa: BLE001 - any transport failure counts as a failed request
        stats["failed"] += 1
        stats["errors"].append(type(e).__name__)


async def run(args):
    rng = random.Random(args.seed)
    # Each of WORDS is one token for SmolLM2's tokenizer (checked with /tokenize: 100, 375 and 500
    # words give 100, 375 and 500 tokens), so N words make an N-token text.
    system = text_of(args.shared_prefix, rng) + "\n\n" if args.shared_prefix else ""
    stats = {"ttft": [], "itl": [], "failed": 0, "completed": 0, "aborted": 0, "output_tokens": 0, "errors": []}
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
    deadline = time.perf_counter() + args.duration if args.duration else None
    remaining = [args.requests]

    async def client_loop(client, index):
        crng = random.Random(args.seed * 1000 + index)
        while True:
            if deadline is not None:
                if time.perf_counter() >= deadline:
                    return
            else:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            if args.shared_prefix:
                prompt = system + "Question: " + text_of(crng.randint(10, 30), crng) + "?\nAnswer:"
            else:
                prompt = text_of(crng.randint(128, 512), crng)   # 128-512 tokens
            abort_after = 8 if args.abort and crng.random() < args.abort else 0
            await one_request(client, args.url, prompt, args.max_tokens, abort_after, stats)

    async with httpx.AsyncClient(limits=limits, timeout=600) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client, i) for i in range(args.concurrency)))
        elapsed = time.perf_counter() - start
    ms = lambda x: None if x is None else round(x * 1000, 1)  # noqa: E731
    result = {
        "label": args.label, "concurrency": args.concurrency, "completed": stats["completed"],
        "aborted": stats["aborted"], "failed": stats["failed"], "errors": stats["errors"][:5],
        "seconds": round(elapsed, 1), "output_tok_s": round(stats["output_tokens"] / elapsed, 1),
        "ttft_p50_ms": ms(percentile(stats["ttft"], 50)), "ttft_p99_ms": ms(percentile(stats["ttft"], 99)),
        "itl_p50_ms": ms(percentile(stats["itl"], 50)), "itl_p99_ms": ms(percentile(stats["itl"], 99)),
        "ttft_mean_ms": ms(statistics.mean(stats["ttft"])) if stats["ttft"] else None,
        "itl_mean_ms": ms(statistics.mean(stats["itl"])) if stats["itl"] else None,
    }
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--duration", type=float, default=0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--shared-prefix", type=int, default=0)
    parser.add_argument("--abort", type=float, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--label", default="")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
