// node-oidc-provider for the back-channel logout test (tests/integration/test_oidc_logout.py):
// the gateway client (RFC 7662 introspection, plain JSON) registered with a
// backchannel_logout_uri (sid required), and two control routes (POST, JSON; the server listens on
// 127.0.0.1 only), since a test cannot log a user in through a browser:
//   /_control/user-token {sub, sid, client_id?, scope?} -> {access_token}: an opaque token of that
//     user and session, as a login would issue it;
//   /_control/backchannel-logout {sub, sid} -> the provider signs a logout token (RS256, its JWKS
//     at /jwks) and POSTs it to the gateway's URI: 200 {ok:true} when the gateway answered 200,
//     502 {error} otherwise.
// Usage: node logout_idp.mjs --port N --gateway-id ID --gateway-secret-file F --logout-uri URL
// Prints "READY <port>" once it accepts connections. Test values only; nothing here is for
// production. Uses the npm packages of tests/servers/oidc (package.json).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'gateway-id': { type: 'string', default: 'gateway' },
    'gateway-secret-file': { type: 'string' },
    'logout-uri': { type: 'string' },
  },
});
const gatewayId = args['gateway-id'];
const gatewaySecret = args['gateway-secret-file']
  ? readFileSync(args['gateway-secret-file'], 'utf8').replace(/\r?\n$/, '') : 'gateway-secret';

const clients = [
  { client_id: gatewayId, client_secret: gatewaySecret,
    backchannel_logout_uri: args['logout-uri'], backchannel_logout_session_required: true },
  { client_id: 'app', client_secret: 'app-secret', scope: 'read' },
].map((c) => ({
  grant_types: [], response_types: [], redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic', ...c,
}));

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: 'logout-idp-key' };

const server = createServer();
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const { port } = server.address();

const provider = new Provider(`http://127.0.0.1:${port}`, {
  cookies: { keys: ['test-only-cookie-key'] },
  clients,
  jwks: { keys: [jwk] },
  scopes: ['read'],
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    backchannelLogout: { enabled: true },
  },
});
provider.on('server_error', (ctx, err) => console.error('idp server_error:', err.message));

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { try { resolve(body ? JSON.parse(body) : {}); } catch (e) { reject(e); } });
  });
}

function answer(res, status, doc) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(doc));
}

async function control(req, res) {
  const doc = await readJson(req);
  if (req.url === '/_control/user-token') {
    const client = await provider.Client.find(doc.client_id || 'app');
    const at = new provider.AccessToken({
      accountId: doc.sub, client, scope: doc.scope || 'read', sid: doc.sid,
      gty: 'authorization_code',
    });
    return answer(res, 200, { access_token: await at.save() });
  }
  if (req.url === '/_control/backchannel-logout') {
    const client = await provider.Client.find(gatewayId);
    try {
      await client.backchannelLogout(doc.sub, doc.sid);
      return answer(res, 200, { ok: true });
    } catch (err) {
      return answer(res, 502, { error: err.message });
    }
  }
  return answer(res, 404, { error: 'no such control route' });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/_control/')) {
    control(req, res).catch((err) => answer(res, 500, { error: err.message }));
    return;
  }
  callback(req, res);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
console.log(`READY ${port}`);
