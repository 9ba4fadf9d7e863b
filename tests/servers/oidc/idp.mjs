// node-oidc-provider as the integration tests' identity server: client-credentials clients with
// OPAQUE access tokens, RFC 7662 introspection (plain JSON), RFC 9701 JWT introspection for the
// client registered with introspection_signed_response_alg, RFC 7009 revocation.
// Usage: node idp.mjs --port N (0: any free port) [--ttl S]
//                     [--gateway-id ID --gateway-secret-file F]
// The gateway's clients: ID gets plain JSON, ID-jwt RFC 9701 (default ID "gateway"). Listens on
// 127.0.0.1 only and prints "READY <port>" on stdout once it accepts connections (like the Python
// test servers); the issuer is http://127.0.0.1:<port>, endpoints /token, /token/introspection,
// /token/revocation, /jwks.
// Client secrets are fixed test values (see CLIENTS below); nothing here is for production.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    ttl: { type: 'string', default: '600' },
    'gateway-id': { type: 'string', default: 'gateway' },
    'gateway-secret-file': { type: 'string' },
  },
});
const gatewayId = args['gateway-id'];
const gatewaySecret = args['gateway-secret-file']
  ? readFileSync(args['gateway-secret-file'], 'utf8').replace(/\r?\n$/, '') : null;

export const CLIENTS = [
  // The gateway's own credentials: plain RFC 7662 JSON answers.
  { client_id: gatewayId, client_secret: gatewaySecret ?? 'gateway-secret' },
  // The same gateway registered for RFC 9701: answers application/token-introspection+jwt when
  // asked with that Accept.
  { client_id: `${gatewayId}-jwt`, client_secret: gatewaySecret ?? 'gateway-jwt-secret',
    introspection_signed_response_alg: 'RS256' },
  // Applications that get tokens with the client credentials grant.
  { client_id: 'app', client_secret: 'app-secret', grant_types: ['client_credentials'],
    scope: 'read write admin' },
  { client_id: 'app2', client_secret: 'app2-secret', grant_types: ['client_credentials'],
    scope: 'read' },
].map((c) => ({
  grant_types: [], response_types: [], redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic', ...c,
}));

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: 'idp-key-1' };

const server = createServer();
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  // Fixed test values: these only sign cookies no test uses, and silence the warning.
  cookies: { keys: ['test-only-cookie-key'] },
  clients: CLIENTS,
  jwks: { keys: [jwk] },
  scopes: ['read', 'write', 'admin'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    jwtIntrospection: { enabled: true },
    revocation: { enabled: true },
  },
  ttl: { ClientCredentials: Number(args.ttl) },
});
// No console noise about the test secrets or the missing production adapter.
provider.on('server_error', (ctx, err) => console.error('idp server_error:', err.message));

server.on('request', provider.callback());
process.on('SIGTERM', () => server.close(() => process.exit(0)));
console.log(`READY ${port}`);
