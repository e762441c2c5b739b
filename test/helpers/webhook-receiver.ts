import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the receiver does with one request: answer with a status, hold it past the sender's timeout, or redirect. */
export type ReceiverAction = { status: number } | { hangMs: number } | { redirect: string };

export interface ReceivedDelivery {
  headers: IncomingHttpHeaders;
  body: string;
  answered: number | 'hung';
}

/**
 * A real HTTP server standing in for a customer's webhook endpoint. It answers by a
 * script (one action per request, in order), then 200 for everything after it.
 */
export async function startWebhookReceiver(script: ReceiverAction[] = []) {
  const received: ReceivedDelivery[] = [];
  const queue = [...script];
  const held = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const action = queue.shift() ?? { status: 200 };
      if ('hangMs' in action) {
        received.push({ headers: req.headers, body, answered: 'hung' });
        held.add(res);
        setTimeout(() => {
          held.delete(res);
          if (!res.destroyed) res.writeHead(200).end('late');
        }, action.hangMs).unref();
        return;
      }
      if ('redirect' in action) {
        received.push({ headers: req.headers, body, answered: 302 });
        res.writeHead(302, { location: action.redirect }).end();
        return;
      }
      received.push({ headers: req.headers, body, answered: action.status });
      res.writeHead(action.status, { 'content-type': 'text/plain' }).end(action.status < 300 ? 'ok' : 'no');
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    received,
    /** Appends actions to the script (not named `then`: the receiver is awaited). */
    append(...actions: ReceiverAction[]) {
      queue.push(...actions);
    },
    /** Bodies answered 2xx, parsed. */
    delivered() {
      return received.filter((r) => typeof r.answered === 'number' && r.answered < 300).map((r) => JSON.parse(r.body) as { id: string; type: string; data: Record<string, unknown> });
    },
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type WebhookReceiver = Awaited<ReturnType<typeof startWebhookReceiver>>;
