import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * Paths whose values never reach a log line (invariant 6): credentials in headers,
 * anything that looks like a token, password or mail body wherever it is nested.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.headers["x-goog-iap-jwt-assertion"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.token',
  '*.accessToken',
  '*.refreshToken',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.secret',
  '*.clientSecret',
  '*.raw',
  '*.html',
  '*.text',
  '*.body',
];

/** SQLSTATE: five characters, at least one digit (`23505`, `22P02`, `XX000`), unlike Node's `EPIPE`. */
const SQLSTATE = /^(?=.*\d)[0-9A-Z]{5}$/;
/** Fields that describe an error without carrying request data: kept when they are short scalars. */
const SAFE_ERROR_FIELDS = ['code', 'status', 'statusCode', 'kind', 'reason', 'type'] as const;
const MAX_MESSAGE = 300;

type Loose = Record<string, unknown>;

function databaseErrorOf(error: Loose, depth = 0): Loose | undefined {
  if (SQLSTATE.test(String(error.code ?? ''))) return error;
  const cause = error.cause;
  if (depth < 4 && cause && typeof cause === 'object') return databaseErrorOf(cause as Loose, depth + 1);
  return undefined;
}

/**
 * SQLSTATE classes whose server messages name schema objects only (relations, columns,
 * constraints) and never echo a value: connection (08), integrity (23: the values are in
 * `detail`, which is never logged), transaction state (25), rollback (40), syntax and
 * access (42), resources (53), operator intervention (57). Class 22 (data exceptions,
 * e.g. `invalid input syntax for type uuid: "<the input>"`) and anything unknown quote
 * input, so their messages are dropped.
 */
const VALUE_FREE_SQLSTATE_CLASSES = new Set(['08', '23', '25', '40', '42', '53', '57']);

/** What a log line may say of an error whose message could hold data (a driver's, a library's): its class name only. */
export function errorNameOf(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}

/**
 * The one way an error reaches a log line (every `err` field, the request logger's too).
 * A database error is logged as its SQLSTATE, constraint, table and column (plus the
 * server's message for the value-free classes above): never Drizzle's wrapper, whose
 * message holds the query text and every bound parameter (password hashes, mail bodies,
 * addresses). Anything else keeps its type, a bounded message, its stack and a few scalar
 * fields, never an arbitrary property bag (a Google client error holds request headers
 * with bearer tokens).
 */
export function serializeError(error: unknown, depth = 0): unknown {
  if (typeof error === 'string') return /failed query|params:/i.test(error) ? '[database error]' : error.slice(0, MAX_MESSAGE);
  if (error === null || typeof error !== 'object') return error;
  const e = error as Loose;
  const type = error instanceof Error ? error.constructor.name : 'Object';
  const message = typeof e.message === 'string' ? e.message : '';
  const database = databaseErrorOf(e) ?? (/^failed query/i.test(message) || 'params' in e ? {} : undefined);
  if (database) {
    const out: Loose = { type: 'DatabaseError' };
    for (const field of ['code', 'constraint', 'table', 'column'] as const) {
      if (typeof database[field] === 'string') out[field] = database[field];
    }
    const serverMessage = database.message;
    if (typeof serverMessage === 'string' && VALUE_FREE_SQLSTATE_CLASSES.has(String(database.code).slice(0, 2)) && !/params:|failed query/i.test(serverMessage)) {
      out.message = serverMessage.slice(0, MAX_MESSAGE);
    }
    return out;
  }
  const out: Loose = { type, message: message.slice(0, MAX_MESSAGE) };
  for (const field of SAFE_ERROR_FIELDS) {
    const value = e[field];
    if ((typeof value === 'string' && value.length <= 100) || typeof value === 'number') out[field] = value;
  }
  if (typeof e.stack === 'string') out.stack = e.stack.split('\n').slice(1).join('\n');
  if (e.cause !== undefined && depth < 3) out.cause = serializeError(e.cause, depth + 1);
  return out;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      serializers: { err: serializeError, error: serializeError },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { service: 'inboxtrail' },
    },
    destination ?? stdoutDestination(),
  );
}

/**
 * Standard output, as pino writes it by default, but fallen silent once it cannot be written:
 * a closed pipe (EPIPE, which pino handles itself) or a closed terminal (EIO). Closing the
 * terminal of `npm start` sends SIGHUP, and the stop's first log line then failed with EIO:
 * pino's stream threw it as an unhandled 'error' and, flushing at exit, retried the write every
 * 100 ms forever — the process stopped listening but never exited, holding the data dir.
 */
function stdoutDestination(): DestinationStream {
  const stream = pino.destination({ fd: 1 });
  const mute = () => undefined;
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EIO' && error.code !== 'EPIPE') throw error; // as before: unhandled
    Object.assign(stream, { write: mute, flushSync: mute, end: mute, destroy: mute });
  });
  return stream;
}

export type { Logger };

/**
 * Path prefixes whose next segment is a credential (recipient tokens; the mailed confirmation of
 * undoing an opt-out, `/p/confirm/<token>`, a signed token whose dots the opaque-segment rule
 * below would stop at). Express routes case-insensitively and Node keeps doubled slashes, so
 * `/U/<token>` and `//t/c/<token>` reach the same handlers and must be redacted the same way.
 */
const TOKEN_PATH = /^(\/+(?:u|p(?:\/+confirm)?|t\/+o|t\/+c)\/+)[^/?#]+/i;
/** Any other long base64url segment is taken for a token too (UUIDs, which name rows, stay readable). */
const LONG_OPAQUE_SEGMENT = /(?<=\/)(?![0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:[/?#]|$))[A-Za-z0-9_%-]{32,}(?=[/?#.]|$)/gi;
/**
 * Query parameters that carry credentials (OAuth codes and state, invitation tokens, a password),
 * a person's address (a data subject export, list filters, the mailbox a reconnect names:
 * `loginHint`, Google's `login_hint`) or what someone searched for (`q`: names and addresses of
 * contacts). Compared as the server reads them: decoded (`%71` is `q`), in any case, without a
 * `[]` suffix (`q[]=`).
 */
const SECRET_KEYS = new Set(['code', 'state', 'email', 'loginhint', 'login_hint', 'q']);
/** A key or header name that names a credential, whatever the rest of it (`deviceToken`, `api_key`, `x-auth-token`, `client_secret`, `key`, `access_key`…). */
const CREDENTIAL_NAME = /token|secret|passw|api[_-]?key|(?:^|[_-])key$|credential|signature|auth|session|cookie|verifier/i;
/**
 * A query value that looks like a credential whatever its name: our API keys (`itk_…`), or any
 * long opaque run, base64 and OAuth codes (`4/0A…`) included (a token under a name no rule
 * foresaw; cursors too, and long encoded text, which carry nothing worth keeping in a log).
 * UUIDs, which name rows, stay readable.
 */
const OPAQUE_VALUE = /^(?:itk_.*|(?![0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$)[A-Za-z0-9_%.~+/=-]{32,})$/i;
/** An address, plain or encoded (once or twice): a query value, a key or a path segment holding one is redacted whole. */
const ADDRESS = /@|%40|%2540/i;
/** `scheme://[userinfo@]host`: the host is kept, a user and password never. */
const ABSOLUTE_URL_ORIGIN = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*@)?([^/?#]*)/i;
const MAX_NESTING = 3;

/**
 * A URL fit for a log line (a request's, its Referer, a redirect's Location): the token of an
 * unsubscribe or tracking link is a credential (whoever holds it can opt that person out), and
 * so is an OAuth code. A URL carried encoded inside another (`/signin?next=…`) is decoded and
 * redacted by the same rules, then encoded again. Anything else that is not a URL (a `mailto:`,
 * free text in a header) is kept only when it holds no address.
 */
export function redactUrl(fullUrl: string, depth = 0): string {
  const absolute = ABSOLUTE_URL_ORIGIN.exec(fullUrl);
  const origin = absolute ? `${absolute[1]}${absolute[2] ? '[redacted]@' : ''}${absolute[3]}` : '';
  const url = fullUrl.slice(absolute?.[0].length ?? 0);
  if (!absolute && !url.startsWith('/')) return ADDRESS.test(url) ? '[redacted]' : url;
  const queryAt = url.search(/[?#]/);
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const rest = queryAt === -1 ? '' : url.slice(queryAt);
  const redactedPath = path
    .replace(TOKEN_PATH, '$1[token]')
    .replace(LONG_OPAQUE_SEGMENT, '[token]')
    .split('/')
    .map((segment) => (ADDRESS.test(segment) ? '[redacted]' : segment))
    .join('/');
  const hashAt = rest.indexOf('#');
  const query = hashAt === -1 ? rest : rest.slice(0, hashAt);
  // A fragment never reaches a server from a browser; sent anyway, it is nothing to keep.
  const fragment = hashAt === -1 || hashAt === rest.length - 1 ? rest.slice(hashAt === -1 ? rest.length : hashAt) : '#[redacted]';
  const redactedQuery = query.length > 1 ? `?${query.slice(1).split('&').map((param) => redactParam(param, depth)).join('&')}` : query;
  return origin + redactedPath + redactedQuery + fragment;
}

/** One `key=value` of a query string (above). */
function redactParam(param: string, depth: number): string {
  const eq = param.indexOf('=');
  if (eq === -1) return ADDRESS.test(param) ? '[redacted]' : param;
  const rawKey = param.slice(0, eq);
  const value = param.slice(eq + 1);
  let key: string;
  try {
    key = decodeURIComponent(rawKey.replace(/\+/g, ' '));
  } catch {
    key = rawKey;
  }
  key = key.toLowerCase().replace(/\[.*$/, '');
  if (key === 'next') return `${rawKey}=${redactNestedUrl(value, depth)}`;
  return SECRET_KEYS.has(key) || CREDENTIAL_NAME.test(key) || ADDRESS.test(value) || ADDRESS.test(rawKey) || OPAQUE_VALUE.test(value) ? `${rawKey}=[redacted]` : param;
}

/** A `next=` value: decoded (again while it was encoded more than once), redacted, encoded once. */
function redactNestedUrl(encoded: string, depth: number): string {
  if (depth >= MAX_NESTING) return '[redacted]';
  try {
    let decoded = decodeURIComponent(encoded.replace(/\+/g, ' '));
    for (let i = 0; i < MAX_NESTING && /%[0-9a-f]{2}/i.test(decoded); i += 1) decoded = decodeURIComponent(decoded);
    return encodeURIComponent(redactUrl(decoded, depth + 1));
  } catch {
    return '[redacted]'; // not decodable: nothing readable to keep
  }
}

/**
 * A request's headers fit for a log line: those that hold a URL (Referer, Origin) redacted as
 * URLs are; any other whose name names a credential (a custom `X-Auth-Token`…) or whose value
 * holds an address (a client can put one in `User-Agent` or `X-Forwarded-For`) redacted whole.
 * Authorization, cookies and the known credential headers are removed before (REDACTED_PATHS).
 */
export function redactHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const redacted: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    const text = Array.isArray(value) ? value.join(', ') : value;
    if (typeof text !== 'string') redacted[name] = value;
    else if (name === 'referer' || name === 'origin') redacted[name] = redactUrl(text);
    else redacted[name] = CREDENTIAL_NAME.test(name) || ADDRESS.test(text) ? '[redacted]' : value;
  }
  return redacted;
}
