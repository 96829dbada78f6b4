#!/usr/bin/env python3
"""Adversarial HTTP run: maximal hostile prompts, many at once, against the real server.

Issue 12, finding 1: sixteen random 256 KiB prompts at once once took 9.7 s each and 2.4 GiB
of RSS. This starts `pd-scanner serve` (release build, sample bundle), then for each kind of
hostile text sends CONCURRENCY maximal prompts at once, ROUNDS times, and reports per-request
latency (p50, max), µs per KiB of scanned text, how many were refused 503 `busy`, and the
server's peak RSS (VmHWM) after each kind. Every prompt is distinct (a fresh random stream).

    python3 bench/adversarial.py BIN [CONCURRENCY] [ROUNDS] [extra serve flags...]
"""
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

SIZE = 256 * 1024 - 64


def kinds(rng):
    """Hostile texts by name; each call gives a new distinct text of about SIZE bytes."""
    printable = [chr(c) for c in range(32, 127) if chr(c) not in '"\\']
    words = ["ignore", "previous", "instructions", "system", "prompt", "reveal", "base64"]
    return {
        "random-ascii": lambda: "".join(rng.choice(printable) for _ in range(SIZE)),
        "non-ascii-symbols": lambda: symbols(rng),
        "digits": lambda: "".join(rng.choice("0123456789 -") for _ in range(SIZE)),
        "injection-words": lambda: " ".join(
            rng.choice(words) for _ in range(SIZE // 8)
        )[:SIZE],
        "expanding-runs": lambda: expanding(rng),
        "rule-words": lambda: rule_words(rng),
        "rule-openings": lambda: rule_openings(rng),
        "base64": lambda: "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
            for _ in range(SIZE)
        ),
    }


def pack_vocabulary():
    """Every word of two or more letters in the sample packs' regexes: what an attacker who
    reads the public packs would use to make every rule a candidate at once."""
    import re
    here = os.path.dirname(os.path.abspath(__file__))
    folder = os.path.join(here, "..", "config", "samples")
    words = set()
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            for line in f:
                if line.strip().startswith("regex:"):
                    words.update(w.lower() for w in re.findall(r"[A-Za-z]{2,}", line))
    return sorted(words - {"regex"})


def rule_words(rng):
    """The packs' own words, digits and separators in random order, up to SIZE bytes: makes
    many rules candidates everywhere and drives their lazy DFAs into new states (each rule's
    cache is capped; this measures what the caps cost in memory)."""
    vocab = pack_vocabulary()
    seps = [" ", " ", " ", "  ", "\n", ": ", ", ", ". ", " - ", "'", '"']
    out, n = [], 0
    while n < SIZE:
        w = rng.choice(vocab) if rng.random() < 0.9 else str(rng.randrange(10 ** 6))
        piece = w + rng.choice(seps)
        n += len(piece)
        out.append(piece)
    return "".join(out)[:SIZE]


def rule_openings(rng):
    """One opening of a rule that counts a gap (`login is`, `address`) repeated with short
    filler and no newline, up to SIZE bytes: the gap could start at every repeat, but the rest
    of the rule never comes. Before the gap check ran on texts over 16 KiB, 64 KB of `address`
    took 55 ms (860 ns a byte) while its lazy DFA built a state at nearly every byte."""
    opening = rng.choice(["login is ", "address ", "grandma ", "if you are asked ", "two responses "])
    filler = ["", "x ", "y ", "z, "]
    out, n = [], 0
    while n < SIZE:
        piece = opening + rng.choice(filler)
        n += len(piece)
        out.append(piece)
    return "".join(out)[:SIZE]


def symbols(rng):
    """Non-ASCII symbols (U+FDFA, the longest NFKC expansion, among them) up to SIZE bytes."""
    out, n = [], 0
    while True:
        c = rng.choice("\ufdfa\u2603\u00e9\u4e2d\u0416\U0001F600")
        n += len(c.encode())
        if n > SIZE:
            return "".join(out)
        out.append(c)


def expanding(rng):
    """Runs of the characters with the longest compatibility decompositions (U+FDFA: 18
    characters; squared Katakana units: 5 or 6), up to SIZE bytes. Issue 12: a 256 KiB run of
    U+FDFA once took 287 ms, ten times any other text, because normalizing multiplied it."""
    out, n = [], 0
    while True:
        c = rng.choice("\ufdfa\ufdfb\u3316\u3356\u332b") * rng.randint(1, 64)
        n += len(c.encode())
        if n > SIZE:
            return "".join(out)
        out.append(c)


def engine_seconds(port):
    """(sum, count) of the server's pd_scan_duration_seconds: time in the engine alone."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("pd_scan_duration_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("pd_scan_duration_seconds_count"):
            count = float(line.split()[-1])
    return total, count


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def one(port, key, body, out):
    t = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", "/v1/scan", body=body,
                  headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        out.append((r.status, time.perf_counter() - t))
        c.close()
    except OSError as e:
        out.append((f"error: {e}", time.perf_counter() - t))


def main():
    binary = sys.argv[1]
    conc = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    extra = sys.argv[4:]
    rng = random.Random(12)
    work = tempfile.mkdtemp()
    key = "bench-key-0123456789abcdef"
    with open(os.path.join(work, "keys"), "w") as f:
        f.write(f"bench={key}\n")
    port = 20000 + rng.randrange(20000)
    here = os.path.dirname(os.path.abspath(__file__))
    server = subprocess.Popen(
        [binary, "-f", os.path.join(here, "..", "config", "samples"), "serve",
         "--listen", f"127.0.0.1:{port}", "--keys", os.path.join(work, "keys"),
         "--hmac-key-file", os.path.join(work, "hmac.key"),
         "--rate-limit", "1000000", "--rate-burst", "1000000"] + extra,
        stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        print(f"server flags: {' '.join(extra) or '(defaults)'}; {conc} at once, {rounds} rounds")
        for name, make in kinds(rng).items():
            results = []
            before = engine_seconds(port)
            for _ in range(rounds):
                bodies = [json.dumps({"prompt": make()}, ensure_ascii=False).encode()
                          for _ in range(conc)]
                threads = [threading.Thread(target=one, args=(port, key, b, results))
                           for b in bodies]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            ok = sorted(d for s, d in results if s == 200)
            busy = sum(1 for s, _ in results if s == 503)
            other = sum(1 for s, _ in results if s not in (200, 503))
            after = engine_seconds(port)
            scans = after[1] - before[1]
            per_kib = (after[0] - before[0]) / scans / (SIZE / 1024) * 1e6 if scans else 0
            p50 = ok[len(ok) // 2] if ok else float("nan")
            print(f"{name:18} ok {len(ok):3} busy {busy:3} other {other}  "
                  f"request p50 {p50 * 1000:6.0f} ms max {(ok[-1] if ok else 0) * 1000:6.0f} ms  "
                  f"engine {per_kib:5.0f} us/KiB  server peak RSS "
                  f"{peak_rss_kib(server.pid) // 1024} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
