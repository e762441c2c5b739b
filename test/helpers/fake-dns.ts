import dgram from 'node:dgram';

/*
 * A DNS server on 127.0.0.1 over UDP for tests: answers A queries from a table (AAAA: no
 * records; an unknown name: NXDOMAIN; a name whose entry is `servfail` or `refused`: that
 * response code, to every question — a resolver that failed, not a name that is missing), or,
 * `silent`, never answers at all — a customer's DNS that hangs.
 */

export interface FakeDns {
  /** `127.0.0.1:<port>`, for Resolver.setServers. */
  server: string;
  /** Every question asked, as `<type> <name>`. */
  queries: string[];
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const FAILURE_RCODES = { servfail: 2, refused: 5 } as const;

export async function startFakeDns(answers: Record<string, string[] | keyof typeof FAILURE_RCODES>, options: { silent?: boolean } = {}): Promise<FakeDns> {
  const socket = dgram.createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (query, from) => {
    // The question: labels from byte 12 up to the empty one, then type and class.
    const labels: string[] = [];
    let at = 12;
    while (query[at]! > 0) {
      labels.push(query.subarray(at + 1, at + 1 + query[at]!).toString('ascii'));
      at += 1 + query[at]!;
    }
    const type = query.readUInt16BE(at + 1);
    const name = labels.join('.').toLowerCase();
    queries.push(`${type === TYPE_A ? 'A' : type === TYPE_AAAA ? 'AAAA' : type} ${name}`);
    if (options.silent) return;
    const question = query.subarray(12, at + 5);
    const entry = answers[name];
    const known = Array.isArray(entry) ? entry : undefined;
    const records = type === TYPE_A && known ? known : [];
    const rcode = typeof entry === 'string' ? FAILURE_RCODES[entry] : known ? 0 : 3; // NXDOMAIN when unknown
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0); // id
    header.writeUInt16BE(0x8180 | rcode, 2); // response, recursion desired + available
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records.length, 6);
    const rrs = records.map((address) => {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // the question's name
      rr.writeUInt16BE(TYPE_A, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6); // ttl
      rr.writeUInt16BE(4, 10);
      address.split('.').forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
      return rr;
    });
    socket.send(Buffer.concat([header, question, ...rrs]), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
