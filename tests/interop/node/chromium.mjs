// How the interop scripts launch Debian's Chromium. These flags matter on a closed network:
// nothing in the background reaches out, and every host name but the loopback ones fails to
// resolve, so a redirect to a client's (fictional) redirect URI stops in the browser instead of
// leaving the machine. Playwright gives each launch a fresh temporary profile (user data dir).
export const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
];
