// panva's openid-client v6 and jose, used unchanged against the Tokenry gateway: discovery,
// client credentials (client_secret_basic and private_key_jwt), jose's remote JWKS + jwtVerify,
// introspection, revocation, the authorization code flow with PKCE (confidential and public
// clients, the login and consent forms submitted as a browser would), an error redirect,
// userinfo and refresh. Driven by tests/interop/test_node_clients.py: the input comes on stdin,
// one JSON result goes to stdout; every check the clients make themselves (issuer, state, iss,
// nonce, PKCE, ID token signature and claims) is theirs, not ours.
import * as client from 'openid-client';
import * as jose from 'jose';
import { FormBrowser, run, timed } from './lib.mjs';

// The gateway serves HTTPS with a certificate of a test CA that node trusts through
// NODE_EXTRA_CA_CERTS: openid-client's refusal of plain HTTP stays on (no allowInsecureRequests).

async function expectRejection(promise) {
  try {
    await promise;
  } catch (err) {
    return { name: err.name, code: err.code, error: err.error, status: err.status };
  }
  throw new Error('expected a rejection, got a success');
}

async function untilInactive(rs, token, timeoutMs) {
  const t0 = performance.now();
  for (;;) {
    const answer = await client.tokenIntrospection(rs, token);
    if (answer.active === false) return Math.round(performance.now() - t0);
    if (performance.now() - t0 > timeoutMs) throw new Error('token still active after revocation');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function codeFlow(
  config,
  { issuer, redirect, user, password, scope, browser = new FormBrowser(), extra = {}, maxAge },
) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirect,
    scope,
    state,
    nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...extra,
  });
  const { location, steps } = await browser.authorize(url, {
    username: user,
    password,
  });
  const callback = new URL(location);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
    maxAge,
  });
  return {
    steps,
    callbackIss: callback.searchParams.get('iss'),
    callbackIssMatches: callback.searchParams.get('iss') === issuer,
    tokens,
  };
}

// An authorization request whose answer is an error redirect; openid-client reads it.
async function errorRedirect(config, browser, redirect, extra) {
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirect,
    scope: 'openid read',
    state,
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    ...extra,
  });
  const { location, steps } = await browser.authorize(url, {});
  const answer = new URL(location);
  return {
    steps,
    iss: answer.searchParams.get('iss'),
    ...(await expectRejection(
      client.authorizationCodeGrant(config, answer, {
        pkceCodeVerifier: client.randomPKCECodeVerifier(),
        expectedState: state,
      }),
    )),
  };
}

async function firstParty(server, { issuer, redirect, user, password, logoutRedirect }) {
  const fp = await client.discovery(server, 'first-party', undefined, client.None());
  const browser = new FormBrowser();
  const flow = { issuer, redirect, user, password, scope: 'openid read', browser };
  const first = await codeFlow(fp, flow);
  // signed in: prompt=none answers at once, and auth_time satisfies max_age
  const sso = await codeFlow(fp, { ...flow, extra: { prompt: 'none', max_age: '300' }, maxAge: 300 });
  // prompt=login asks again
  const again = await codeFlow(fp, { ...flow, extra: { prompt: 'login' } });
  // another browser has no session: prompt=none is login_required
  const noSession = await errorRedirect(fp, new FormBrowser(), redirect, { prompt: 'none' });

  // RP-initiated logout, with the ID token as the hint; then the session is gone
  const logoutState = client.randomState();
  const logoutUrl = client.buildEndSessionUrl(fp, {
    id_token_hint: again.tokens.id_token,
    post_logout_redirect_uri: logoutRedirect,
    state: logoutState,
  });
  const logout = await browser.request(logoutUrl);
  const back = logout.headers.get('location') && new URL(logout.headers.get('location'));
  const afterLogout = await errorRedirect(fp, browser, redirect, { prompt: 'none' });
  return {
    first: { steps: first.steps, sub: first.tokens.claims().sub },
    sso: {
      steps: sso.steps,
      auth_time_kept: sso.tokens.claims().auth_time === first.tokens.claims().auth_time,
    },
    prompt_login: {
      steps: again.steps,
      newer_auth_time: again.tokens.claims().auth_time >= first.tokens.claims().auth_time,
    },
    no_session: noSession,
    logout: {
      status: logout.status,
      to: back ? `${back.origin}${back.pathname}` : null,
      state_ok: back ? back.searchParams.get('state') === logoutState : false,
    },
    after_logout: afterLogout,
  };
}

run(async (input, out) => {
  const { issuer, secrets, user, password, redirect, assertion_jwk: assertionJwk } = input;
  const server = new URL(issuer);
  const t = {};
  out.timings = t;

  // Discovery (OIDC Discovery 1.0; openid-client checks that issuer equals the URL's origin)
  const demo = await timed(t, 'discovery', () =>
    client.discovery(server, 'demo', undefined, client.ClientSecretBasic(secrets.demo)),
  );
  const meta = demo.serverMetadata();
  out.discovery = {
    issuer: meta.issuer,
    supportsPKCE: meta.supportsPKCE(),
    iss_parameter: meta.authorization_response_iss_parameter_supported,
    code_challenge_methods: meta.code_challenge_methods_supported,
    grant_types: meta.grant_types_supported,
  };

  // Client credentials, client_secret_basic
  const cc = await timed(t, 'client_credentials', () =>
    client.clientCredentialsGrant(demo, { scope: 'demo.read' }),
  );
  out.client_credentials = {
    token_type: cc.token_type,
    scope: cc.scope,
    expires_in: cc.expiresIn(),
  };

  // jose: the published JWKS, with issuer, audience and typ checked (RFC 9068 §4)
  const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  const verified = await timed(t, 'jose_verify', () =>
    jose.jwtVerify(cc.access_token, jwks, {
      issuer,
      audience: 'demo-api',
      typ: 'at+jwt',
      algorithms: ['ES256'],
    }),
  );
  out.jose = {
    header: verified.protectedHeader,
    sub: verified.payload.sub,
    client_id: verified.payload.client_id,
    scope: verified.payload.scope,
    wrong_audience: await expectRejection(
      jose.jwtVerify(cc.access_token, jwks, { issuer, audience: 'other-api' }),
    ),
    wrong_issuer: await expectRejection(
      jose.jwtVerify(cc.access_token, jwks, { issuer: 'https://elsewhere.test', audience: 'demo-api' }),
    ),
    wrong_typ: await expectRejection(
      jose.jwtVerify(cc.access_token, jwks, { issuer, audience: 'demo-api', typ: 'JWT' }),
    ),
  };

  // Introspection by the resource server (RFC 7662), revocation by the client (RFC 7009)
  const rsAuth = client.ClientSecretBasic(secrets['demo-api']);
  const rs = await client.discovery(server, 'demo-api', undefined, rsAuth);
  const active = await timed(t, 'introspection', () => client.tokenIntrospection(rs, cc.access_token));
  await timed(t, 'revocation', () => client.tokenRevocation(demo, cc.access_token));
  out.introspection = {
    active: active.active,
    client_id: active.client_id,
    scope: active.scope,
    aud: active.aud,
    token_type: active.token_type,
    inactive_after_revocation_ms: await untilInactive(rs, cc.access_token, 10000),
  };
  out.wrong_secret = await expectRejection(
    client
      .discovery(server, 'demo', undefined, client.ClientSecretBasic('not-the-secret'))
      .then((c) => client.clientCredentialsGrant(c, { scope: 'demo.read' })),
  );

  // Client credentials, private_key_jwt (RFC 7523; openid-client's assertion aud is the issuer)
  const key = await jose.importJWK(assertionJwk, 'ES256');
  const pkAuth = client.PrivateKeyJwt({ key, kid: assertionJwk.kid });
  const jwtsvc = await client.discovery(server, 'jwtsvc', undefined, pkAuth);
  const pkjwt = await timed(t, 'private_key_jwt', () =>
    client.clientCredentialsGrant(jwtsvc, { scope: 'read' }),
  );
  out.private_key_jwt = { token_type: pkjwt.token_type, scope: pkjwt.scope };

  // Authorization code + PKCE, a confidential client; then userinfo and refresh
  const webAuth = client.ClientSecretBasic(secrets.web);
  const web = await client.discovery(server, 'web', undefined, webAuth);
  const flow = await timed(t, 'code_flow', () =>
    codeFlow(web, { issuer, redirect, user, password, scope: 'openid read' }),
  );
  const idClaims = flow.tokens.claims();
  out.code_flow = {
    steps: flow.steps,
    callback_iss_matches: flow.callbackIssMatches,
    scope: flow.tokens.scope,
    has_refresh_token: Boolean(flow.tokens.refresh_token),
    id_token: { sub: idClaims.sub, aud: idClaims.aud, iss: idClaims.iss, auth_time: idClaims.auth_time },
  };
  out.userinfo = await timed(t, 'userinfo', () =>
    client.fetchUserInfo(web, flow.tokens.access_token, idClaims.sub),
  );
  const refreshed = await timed(t, 'refresh', () =>
    client.refreshTokenGrant(web, flow.tokens.refresh_token),
  );
  const refreshedClaims = refreshed.claims();
  out.refresh = {
    rotated: refreshed.refresh_token !== flow.tokens.refresh_token,
    new_access_token: refreshed.access_token !== flow.tokens.access_token,
    id_token: refreshedClaims && {
      sub: refreshedClaims.sub,
      aud: refreshedClaims.aud,
      iss: refreshedClaims.iss,
      auth_time: refreshedClaims.auth_time,
      nonce: refreshedClaims.nonce ?? null,
    },
  };
  // Revoking the refresh token revokes its family (RFC 7009 §2.1)
  await client.tokenRevocation(web, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  out.refresh_after_revocation = await expectRejection(
    client.refreshTokenGrant(web, refreshed.refresh_token),
  );

  // A public client (token_endpoint_auth_method none): PKCE is what binds the code
  const spa = await client.discovery(server, 'spa', undefined, client.None());
  const spaFlow = await timed(t, 'public_code_flow', () =>
    codeFlow(spa, { issuer, redirect, user, password, scope: 'openid read' }),
  );
  out.public_code_flow = {
    steps: spaFlow.steps,
    sub: spaFlow.tokens.claims().sub,
    aud: spaFlow.tokens.claims().aud,
  };

  // A first-party client: no consent page; the login session (cookie) gives single sign-on,
  // and prompt and max_age are honoured (OIDC Core §3.1.2.1); RP-initiated logout ends it
  out.first_party = await timed(t, 'first_party', () =>
    firstParty(server, { issuer, redirect, user, password, logoutRedirect: input.logout_redirect }),
  );

  // A denial comes back as an error redirect with iss (RFC 9207 §2), which openid-client reads
  const state = client.randomState();
  const denyUrl = client.buildAuthorizationUrl(web, {
    redirect_uri: redirect,
    scope: 'openid read',
    state,
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  const denied = await new FormBrowser().authorize(denyUrl, {
    username: user,
    password,
    decision: 'deny',
  });
  const deniedUrl = new URL(denied.location);
  out.denied = {
    iss: deniedUrl.searchParams.get('iss'),
    ...(await expectRejection(
      client.authorizationCodeGrant(web, deniedUrl, {
        pkceCodeVerifier: client.randomPKCECodeVerifier(),
        expectedState: state,
      }),
    )),
  };
  return {};
});
