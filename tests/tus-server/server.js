// A real tus 1.0 server for sfr-gateway's transport tests (never used in production).
//
// Stock @tus/server + @tus/file-store, plus test-only switches:
//   --host H --port P        listen address (env TUS_HOST / TUS_PORT; port 0 = any free port)
//   --dir DIR                upload store (env TUS_DIR)
//   --token T                require "Authorization: Bearer T" on every request (env TUS_TOKEN)
//   --cert F --key F         serve HTTPS with this certificate chain and key
//   --ca F                   with HTTPS: require a client certificate issued by this CA (mutual TLS)
//   --checksum               offer the tus checksum extension (sha1, sha256): verified per PATCH
//   --name-by-metadata KEY   upload id = metadata[KEY] (reproduces the "re-create overwrites" hazard)
//   --max-size N             refuse uploads larger than N bytes (413)
//   --location-base URL      put uploads at URL/files/ID (a misconfigured or foreign Location)
//   --log FILE               append JSON lines: each request on arrival, its status, creations
// Prints one JSON line {"port": P, "scheme": "http"|"https"} on stdout once listening.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { parseArgs } from 'node:util';
import { Server, EVENTS } from '@tus/server';
import { FileStore } from '@tus/file-store';

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.TUS_HOST ?? '127.0.0.1' },
    port: { type: 'string', default: process.env.TUS_PORT ?? '0' },
    dir: { type: 'string', default: process.env.TUS_DIR ?? './files' },
    path: { type: 'string', default: '/files' },
    token: { type: 'string', default: process.env.TUS_TOKEN ?? '' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    checksum: { type: 'boolean', default: false },
    'name-by-metadata': { type: 'string' },
    'max-size': { type: 'string' },
    log: { type: 'string' },
    'location-base': { type: 'string' },
  },
});

const tls = Boolean(opt.cert && opt.key);
const scheme = tls ? 'https' : 'http';
const ALGORITHMS = ['sha1', 'sha256'];

const store = new FileStore({ directory: opt.dir });
if (opt.checksum) store.extensions.push('checksum');

const tus = new Server({
  path: opt.path,
  datastore: store,
  maxSize: opt['max-size'] ? Number(opt['max-size']) : undefined,
  generateUrl: (_req, { host, path, id }) => `${opt['location-base'] ?? `${scheme}://${host}`}${path}/${id}`,
  namingFunction: opt['name-by-metadata']
    ? (_req, metadata) => {
        const id = metadata?.[opt['name-by-metadata']];
        if (!id || !/^[A-Za-z0-9._-]+$/.test(id)) throw { status_code: 400, body: 'bad naming metadata\n' };
        return id;
      }
    : undefined,
});

function log(entry) {
  if (opt.log) fs.appendFileSync(opt.log, `${JSON.stringify(entry)}\n`);
}

tus.on(EVENTS.POST_CREATE, (_req, upload) => log({ event: 'create', id: upload.id, size: upload.size }));
tus.on(EVENTS.POST_FINISH, (_req, _res, upload) => log({ event: 'finish', id: upload.id }));

function reply(res, status, body) {
  res.writeHead(status, { 'Tus-Resumable': '1.0.0', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function checkedPatch(req, res) {
  // Checksum extension: the whole PATCH body is verified before a single byte is stored.
  const [alg, expected] = String(req.headers['upload-checksum']).split(' ');
  if (!ALGORITHMS.includes(alg) || !expected) return reply(res, 400, 'Bad Upload-Checksum\n');
  const parts = [];
  try {
    for await (const part of req) parts.push(part);
  } catch {
    return; // the client went away mid-body: store nothing
  }
  if (!req.complete) return;
  const body = Buffer.concat(parts);
  if (crypto.createHash(alg).update(body).digest('base64') !== expected) {
    return reply(res, 460, 'Checksum Mismatch\n');
  }
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i].toLowerCase() !== 'content-length') headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  }
  const response = await tus.handleWeb(
    new Request(`${scheme}://${req.headers.host}${req.url}`, { method: 'PATCH', headers, body, duplex: 'half' }),
  );
  const out = Buffer.from(await response.arrayBuffer());
  res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
  res.end(out);
}

async function handle(req, res) {
  // Logged on arrival (before any answer can reach the client), the status once sent.
  log({
    method: req.method,
    url: req.url,
    upload_offset: req.headers['upload-offset'] ?? null,
    upload_length: req.headers['upload-length'] ?? null,
    checksum: req.headers['upload-checksum'] ?? null,
    client_cn: tls && req.socket.getPeerCertificate ? (req.socket.getPeerCertificate()?.subject?.CN ?? null) : null,
  });
  res.on('finish', () => log({ event: 'response', of: `${req.method} ${req.url}`, status: res.statusCode }));
  if (opt.token && req.headers.authorization !== `Bearer ${opt.token}`) {
    req.resume();
    return reply(res, 401, 'Unauthorized\n');
  }
  if (opt.checksum && req.method === 'OPTIONS') res.setHeader('Tus-Checksum-Algorithm', ALGORITHMS.join(','));
  if (opt.checksum && req.method === 'PATCH' && req.headers['upload-checksum']) return checkedPatch(req, res);
  return tus.handle(req, res);
}

const onRequest = (req, res) =>
  handle(req, res).catch((err) => {
    if (!res.headersSent) reply(res, 500, `test server error: ${err?.message ?? err}\n`);
  });

const server = tls
  ? https.createServer(
      {
        cert: fs.readFileSync(opt.cert),
        key: fs.readFileSync(opt.key),
        ca: opt.ca ? fs.readFileSync(opt.ca) : undefined,
        requestCert: Boolean(opt.ca),
        rejectUnauthorized: Boolean(opt.ca),
      },
      onRequest,
    )
  : http.createServer(onRequest);

server.listen(Number(opt.port), opt.host, () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port, scheme })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
