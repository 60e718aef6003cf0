#!/usr/bin/env python3
"""A TLS-terminating TCP proxy, standing in for a CDN's RTMPS front end in tests.

usage: tls_proxy.py LISTEN_PORT UPSTREAM_PORT CERT_PEM KEY_PEM
Listens on 127.0.0.1:LISTEN_PORT with TLS and relays each connection to 127.0.0.1:UPSTREAM_PORT.
Prints "ready" once listening."""
import asyncio
import ssl
import sys

listen_port, upstream_port, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))


async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, ssl=ctx)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
