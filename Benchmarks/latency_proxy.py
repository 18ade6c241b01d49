"""A loopback TCP proxy that plays a far-away S3: every byte a client sends reaches the upstream DELAY_MS
later, as on a link with that one-way latency (a delay line, like netem: bytes keep their order and a
request split over several TCP segments is delayed once, not once per segment). Answers come back at
once, so each request/response round trip costs DELAY_MS more; connections are proxied one to one, so
a client's keep-alive and its number of connections are what they would be against S3.

  latency_proxy.py PORT UPSTREAM_PORT DELAY_MS

For cloudtrailbeat's benchmarks (Benchmarks/Sources/EndToEndBenchmark): loopback only.
"""
import asyncio, sys, time

PORT, UPSTREAM, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000


async def delayed(reader, writer):
    """Client → upstream: each chunk leaves DELAY after it arrived, in order."""
    line = asyncio.Queue()

    async def send():
        while True:
            due, data = await line.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            line.put_nowait((time.monotonic() + DELAY, data))
    finally:
        line.put_nowait((0, None))
        try:
            await sender
        except (ConnectionError, OSError):
            pass


async def plain(reader, writer):
    """Upstream → client, unchanged."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(delayed(client_reader, up_writer), plain(up_reader, client_writer), return_exceptions=True)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
