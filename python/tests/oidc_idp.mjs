// A real OpenID Connect provider on loopback for the dashboard's sign-in test:
// oidc-provider (npm, certified), with its development login and consent pages. It
// issues JWT access tokens for Warden's audience (RFC 8707 resource indicators), as an
// organisation's identity provider would be configured to.
//   PORT=… REDIRECT=… AUDIENCE=… OIDC_PROVIDER=…/oidc-provider/lib/index.js node oidc_idp.mjs
const { default: Provider, errors } = await import(process.env.OIDC_PROVIDER ?? 'oidc-provider');

const { PORT, REDIRECT, AUDIENCE } = process.env;
const issuer = `http://127.0.0.1:${PORT}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'warden-dashboard',
    client_secret: 'dashboard-secret',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  cookies: { keys: ['test-only-cookie-key'] },
  scopes: ['openid', 'audit:read'],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== AUDIENCE) throw new errors.InvalidTarget();
        return {
          scope: 'audit:read',
          audience: AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 3600,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});
provider.listen(Number(PORT), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
