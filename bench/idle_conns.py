"""Idle TCP connections for bench/proxy.sh: the memory a proxy spends per
connection that is open and quiet. Standard library only.

  idle_conns.py serve ADDR PORT
      Accepts connections, answers each one's first line with "ok\\n" and then
      keeps it open, reading nothing more, until the peer closes it.
  idle_conns.py open ADDR PORT N
      Opens N connections (50 at a time), sends a line on each and waits for
      its answer, so every one went through the proxy both ways; then prints
      "open N" and holds them, idle, until it is killed.

Neighbours: bench/proxy.sh starts the server in the lab's upstream namespace
and the opener on the LAN client, and reads the proxy's VmRSS in between.
"""
import asyncio
import sys

held = []


async def serve(addr, port):
    async def one(reader, writer):
        try:
            await reader.readline()
            writer.write(b"ok\n")
            await writer.drain()
            await reader.read()  # returns when the peer closes
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(one, addr, port, backlog=4096)
    async with server:
        await server.serve_forever()


async def open_many(addr, port, n):
    gate = asyncio.Semaphore(50)

    async def one(i):
        async with gate:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), 20)
            writer.write(b"hello %d\n" % i)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 20)
            if line != b"ok\n":
                raise RuntimeError(f"connection {i}: answer {line!r}")
            held.append((reader, writer))

    await asyncio.gather(*(one(i) for i in range(n)))
    print(f"open {len(held)}", flush=True)
    await asyncio.Event().wait()


def main():
    verb, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if verb == "serve":
        asyncio.run(serve(addr, port))
    elif verb == "open":
        asyncio.run(open_many(addr, port, int(sys.argv[4])))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve ADDR PORT | open ADDR PORT N")


if __name__ == "__main__":
    main()
