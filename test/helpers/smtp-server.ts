import { createServer, type AddressInfo, type Socket } from 'node:net';

/**
 * A small SMTP server on a real socket, for the account mailer's tests (nodemailer talks to it
 * as to any relay): it accepts mail, or refuses a recipient the way Postfix does (`550 5.1.1
 * <address>: Recipient address rejected`, the address quoted in the reply), or every recipient
 * for a while (`451`), or our sender (`553` at MAIL FROM). No TLS, no AUTH: `smtp://127.0.0.1:<port>`.
 */
export interface TestSmtpServer {
  url: string;
  /** Mail accepted: the envelope's recipients and the message as sent. */
  received: { to: string[]; data: string }[];
  /** Recipients refused with 550. */
  refuse: Set<string>;
  /** While true, every recipient gets 451 (a temporary failure). */
  busy: boolean;
  /** While true, MAIL FROM gets 553 (our sender refused: a configuration problem, not the recipient's address). */
  refuseSender: boolean;
  close(): Promise<void>;
}

export async function startSmtpServer(): Promise<TestSmtpServer> {
  const sockets = new Set<Socket>();
  const state: Omit<TestSmtpServer, 'url' | 'close'> = { received: [], refuse: new Set(), busy: false, refuseSender: false };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.setEncoding('utf8');
    let buffer = '';
    let inData = false;
    let data = '';
    let to: string[] = [];
    const reply = (line: string) => socket.write(`${line}\r\n`);
    reply('220 test-smtp ESMTP');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf('\r\n')) !== -1) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            state.received.push({ to, data });
            reply('250 2.0.0 queued');
          } else data += `${line.startsWith('..') ? line.slice(1) : line}\n`;
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') reply('250 test-smtp');
        else if (verb === 'MAIL') {
          to = [];
          reply(state.refuseSender ? '553 5.7.1 Sender address rejected: not owned by user' : '250 2.1.0 ok');
        } else if (verb === 'RCPT') {
          const address = /<([^>]*)>/.exec(line)?.[1] ?? '';
          if (state.busy) reply(`451 4.3.0 <${address}>: Temporary lookup failure`);
          else if (state.refuse.has(address.toLowerCase())) reply(`550 5.1.1 <${address}>: Recipient address rejected: User unknown`);
          else {
            to.push(address);
            reply('250 2.1.5 ok');
          }
        } else if (verb === 'DATA') {
          inData = true;
          data = '';
          reply('354 end with .');
        } else if (verb === 'RSET') reply('250 2.0.0 ok');
        else if (verb === 'QUIT') {
          reply('221 2.0.0 bye');
          socket.end();
        } else reply('502 5.5.2 not implemented');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `smtp://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
