#!/usr/bin/env python3
"""Drives `quill serve` with OpenAI's own Python client, as a user's program would.

    Tests/Server/openai_client_test.py PATH/TO/quill        (needs `pip install openai`)

Starts the server on a free port with the default model, then checks: streaming chat, a
non-streaming completion, n=2, stop strings, seed reproducibility alone and among 8 concurrent
requests, usage counts, and an error. Exits non-zero on the first failure.
"""
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import openai


def start(quill):
    proc = subprocess.Popen([quill, "serve", "--port", "0", "-c", "8192", "-t", "2"], stderr=subprocess.PIPE, text=True)
    port = None
    for line in proc.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    assert port, "quill serve did not start"
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health").status == 200:
                return proc, port
        except Exception:
            time.sleep(0.1)
    raise AssertionError("quill serve never became healthy")


def main():
    quill = sys.argv[1] if len(sys.argv) > 1 else ".build/release/quill"
    proc, port = start(quill)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        model = client.models.list().data[0].id
        messages = [{"role": "user", "content": "Name three colours."}]

        # Streaming chat: role first, content deltas, a finish reason, usage when asked.
        stream = client.chat.completions.create(model=model, messages=messages, stream=True, temperature=0,
                                                max_tokens=40, stream_options={"include_usage": True})
        chunks = list(stream)
        assert chunks[0].choices[0].delta.role == "assistant"
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish and finish[-1] in ("stop", "length"), finish
        usage = chunks[-1].usage
        assert usage and usage.completion_tokens > 0 and usage.prompt_tokens > 0, usage
        whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=40)
        assert whole.choices[0].message.content == streamed, (whole.choices[0].message.content, streamed)
        assert whole.usage.completion_tokens == usage.completion_tokens
        print(f"streaming chat: {usage.completion_tokens} tokens, same text as non-streaming")

        # Non-streaming completion with n=2 and different seeds per choice.
        completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, n=2,
                                               temperature=1.0, seed=5)
        assert len(completion.choices) == 2 and [c.index for c in completion.choices] == [0, 1]
        reasons = [c.finish_reason for c in completion.choices]
        if all(r == "length" for r in reasons):
            assert completion.usage.completion_tokens == 48, completion.usage
        else:
            assert completion.usage.completion_tokens < 48, completion.usage
        assert completion.choices[0].text != completion.choices[1].text, "choices drew from the same seed"
        print("n=2:", [c.text[:30] for c in completion.choices])

        # Stop strings end the text before the stop string.
        counted = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=30, temperature=0)
        assert " 6" in counted.choices[0].text, counted.choices[0].text
        stopped = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=30, temperature=0, stop=[" 6"])
        assert stopped.choices[0].text == counted.choices[0].text.split(" 6")[0], stopped.choices[0].text
        assert stopped.choices[0].finish_reason == "stop"
        print("stop:", repr(stopped.choices[0].text))

        # Seeds: the same text alone and among 8 concurrent requests.
        def sample(seed, prompt="The best thing about the sea is"):
            r = client.completions.create(model=model, prompt=prompt, max_tokens=32, temperature=0.9, seed=seed)
            return r.choices[0].text
        alone = sample(1234)
        assert sample(1234) == alone
        prompts = ["Once upon a time", "def main():", "The capital of Spain", "Dear diary,", "Water is", "In 1492", "Cats"]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(sample, 1234)] + [pool.submit(sample, 99 + i, p) for i, p in enumerate(prompts)]
            together = futures[0].result()
            [f.result() for f in futures[1:]]
        assert together == alone, (alone, together)
        print("seed: same text alone and among 8 concurrent requests")

        # Logprobs: one entry per token, the chosen token's among the top alternatives under greedy decoding.
        scored = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=8,
                                                logprobs=True, top_logprobs=3)
        content = scored.choices[0].logprobs.content
        assert len(content) == scored.usage.completion_tokens, (len(content), scored.usage)
        for entry in content:
            assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
            assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob
            assert entry.token == entry.top_logprobs[0].token and entry.logprob == entry.top_logprobs[0].logprob
        print("logprobs:", [(e.token, round(e.logprob, 3)) for e in content[:3]])

        # An error is OpenAI's error object, which the client raises as BadRequestError.
        try:
            client.chat.completions.create(model=model, messages=messages, temperature=5)
            raise AssertionError("temperature 5 was accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and "temperature" in str(e), e
        print("error: 400 for temperature 5")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, f"quill serve exited {code} after SIGTERM"
    print("openai client test passed")


if __name__ == "__main__":
    main()
