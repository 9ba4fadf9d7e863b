// The integration tests' API: verifies the JWT the gateway forwards with a standard JOSE
// implementation (jose), against the agent's JWKS URL: signature, typ at+jwt, iss, aud, exp.
// Answers every request with 200 and JSON {verified, error?, header?, claims?, method, path,
// headers: [[name, value]...]}, so a
// test sees both what HAProxy let through and whether a real validator accepts it.
// Usage: node backend.mjs --port N --jwks-url URL --issuer ISS --audience AUD. Prints "READY <port>".
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'jwks-url': { type: 'string' },
    issuer: { type: 'string' },
    audience: { type: 'string' },
  },
});
for (const k of ['jwks-url', 'issuer', 'audience']) {
  if (!args[k]) {
    console.error(`backend: --${k} is required`);
    process.exit(2);
  }
}

// No cooldown: a rotation test presents a new kid right after the JWKS changed.
const jwks = createRemoteJWKSet(new URL(args['jwks-url']), { cooldownDuration: 0, cacheMaxAge: 0 });

async function verdict(authorization) {
  const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(authorization || '');
  if (!m) return { verified: false, error: 'no bearer JWT' };
  try {
    const { payload, protectedHeader } = await jwtVerify(m[1], jwks, {
      issuer: args.issuer,
      audience: args.audience,
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
    });
    return { verified: true, header: protectedHeader, claims: payload };
  } catch (e) {
    let header;
    try {
      header = decodeProtectedHeader(m[1]);
    } catch {
      header = undefined;
    }
    return { verified: false, error: `${e.code || 'ERR'}: ${e.message}`, header };
  }
}

function pairs(raw) {
  const out = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

const server = createServer(async (req, res) => {
  req.resume();
  const body = JSON.stringify({ ...(await verdict(req.headers.authorization)),
    method: req.method, path: req.url, headers: pairs(req.rawHeaders) });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(Number(args.port), '127.0.0.1', () => console.log(`READY ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
