import { createConnection, createServer, type Socket } from 'node:net';

/*
 * A TCP proxy a test puts between the app and its database to make the network fail:
 *   pass                  forward both ways;
 *   stall                 the server's answers stop coming back (requests still arrive):
 *                         a hung database, as its clients see it;
 *   stall-after-commit    forward until a client sends COMMIT (or the tracking writer's
 *                         insert, a statement that commits on its own), then stall: the
 *                         commit lands, its acknowledgement is lost;
 *   cut                   every connection is reset, new ones are refused.
 */

export type ProxyMode = 'pass' | 'stall' | 'stall-after-commit' | 'cut';

const COMMITS = [Buffer.from('commit'), Buffer.from('insert into tracking_events (')];

export async function startTcpProxy(target: { host: string; port: number }) {
  let mode: ProxyMode = 'pass';
  const sockets = new Set<Socket>();
  let commitsStalled = 0;

  const server = createServer((client) => {
    if (mode === 'cut') return client.destroy();
    const upstream = createConnection(target);
    sockets.add(client);
    sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      if (mode === 'stall-after-commit' && COMMITS.some((commit) => chunk.includes(commit))) {
        commitsStalled += 1;
        mode = 'stall';
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (mode === 'pass' || mode === 'stall-after-commit') client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };

  return {
    port,
    get mode(): ProxyMode {
      return mode;
    },
    /** Commits whose acknowledgement was held back. */
    get commitsStalled(): number {
      return commitsStalled;
    },
    set(next: ProxyMode): void {
      mode = next;
      if (next === 'cut') for (const socket of sockets) socket.destroy();
    },
    async close(): Promise<void> {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
