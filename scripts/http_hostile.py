#!/usr/bin/env python3
"""HTTP under hostile clients: one validator on loopback against
N slow-header connections, N idle /v1/events streams and 8 concurrent
maximum-size bodies. Prints /health latency from another loopback address,
how many hostile connections the node still holds, and the node's RSS.

Usage: http_hostile.py API_HOST:PORT NODE_PID [N]
(scripts/http_hostile.sh starts the node, also under `ulimit -n 1024`.)
Loopback only; every socket is closed at the end."""
import asyncio, resource, socket, sys, time

API, PID = sys.argv[1], int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 8000
HOST, PORT = API.rsplit(":", 1)
PORT = int(PORT)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * N + 1000), hard))


def rss_kib(field="VmRSS"):
    for line in open(f"/proc/{PID}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


async def health_ms():
    """One GET /health from 127.0.0.2 (another address than the attack)."""
    t = time.monotonic()
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(HOST, PORT, local_addr=("127.0.0.2", 0)), 10)
        w.write(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        head = await asyncio.wait_for(r.read(200), 10)
        w.close()
        ok = head.startswith(b"HTTP/1.1 200")
    except Exception:
        ok = False
    return (time.monotonic() - t) * 1000, ok


async def probe(label, n=10):
    res = []
    for _ in range(n):
        res.append(await health_ms())
        await asyncio.sleep(0.1)
    lat = sorted(ms for ms, _ in res)
    print(f"  {label}: /health ok {sum(ok for _, ok in res)}/{n}, "
          f"p50 {lat[n // 2]:.1f} ms, max {lat[-1]:.1f} ms; node RSS {rss_kib() // 1024} MiB")


async def open_many(n, first_bytes):
    """Opens n connections from 127.0.0.1 (each with 1 s to connect) and
    sends first_bytes on each. Returns the open (reader, writer) pairs."""
    sem = asyncio.Semaphore(500)

    async def one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(HOST, PORT, local_addr=("127.0.0.1", 0)), 1)
                w.write(first_bytes)
                return r, w
            except Exception:
                return None
    return [c for c in await asyncio.gather(*(one() for _ in range(n))) if c]


async def still_open(conns):
    """How many of conns the server has not closed (nothing to read = open)."""
    n = 0
    for r, _ in conns:
        try:
            data = await asyncio.wait_for(r.read(4096), 0.001)
            if data and not r.at_eof():
                n += 1  # an answer (503, event) but open
        except asyncio.TimeoutError:
            n += 1
        except Exception:
            pass
    return n


def close_all(conns):
    for _, w in conns:
        w.close()


async def main():
    print(f"node pid {PID}, fd limit {open(f'/proc/{PID}/limits').read().split('Max open files')[1].split()[0]}, N = {N}")
    await probe("idle")
    t = time.monotonic()
    slow = await open_many(N, b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
    print(f"  {len(slow)} slow-header connections opened in {time.monotonic() - t:.1f} s")
    await probe("slow headers held")
    await asyncio.sleep(6)  # past the 5 s header timeout
    print(f"  6 s later: {await still_open(slow)} of them still open")
    await probe("after the header timeout")
    close_all(slow)
    await asyncio.sleep(1)

    t = time.monotonic()
    streams = await open_many(N, b"GET /v1/events HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.sleep(1)
    print(f"  {len(streams)} event-stream requests sent in {time.monotonic() - t:.1f} s; "
          f"{await still_open(streams)} still open")
    await probe("event streams held")
    close_all(streams)
    await asyncio.sleep(1)

    body = b"{\"transactions\": [" + b" " * (4 * 1024 * 1024 - 64) + b"]}"
    before = rss_kib()

    async def post():
        try:
            r, w = await asyncio.open_connection(HOST, PORT, local_addr=("127.0.0.1", 0))
            w.write(b"POST /v1/transactions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode() + body)
            await w.drain()
            head = await asyncio.wait_for(r.read(100), 30)
            w.close()
            return head.split(b"\r\n")[0].decode()
        except Exception as e:
            return repr(e)
    for round_ in range(3):
        answers = await asyncio.gather(*(post() for _ in range(8)))
    print(f"  8 concurrent {len(body) >> 20} MiB bodies x3: {sorted(set(answers))}; "
          f"RSS {before // 1024} -> {rss_kib() // 1024} MiB, peak (VmHWM) {rss_kib('VmHWM') // 1024} MiB")
    await probe("after the bodies")

asyncio.run(main())
