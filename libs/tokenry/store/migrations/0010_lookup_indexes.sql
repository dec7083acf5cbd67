-- Indexes for two lookups that scanned whole tables.
--
-- The gateway's CORS preflight and userinfo 401 ask, unauthenticated, whether any client
-- registered an origin (ClientStore.has_web_origin: web_origins @> ARRAY[origin]); a GIN
-- index answers that without reading every client row.
CREATE INDEX clients_web_origins ON clients USING gin (web_origins);

-- `tokenry user delete` ends the deleted user's login sessions (DELETE ... WHERE subject).
CREATE INDEX login_sessions_subject ON login_sessions (subject);
