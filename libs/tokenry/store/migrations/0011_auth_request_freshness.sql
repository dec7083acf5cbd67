-- OIDC Core §3.1.2.1: the sign-in freshness a parked authorization request demands, checked when
-- the login app completes it (docs/flows.md §2), so a login app cannot claim an old sign-in
-- as fresh. NULL: the request set no max_age / no prompt=login.
ALTER TABLE auth_requests
    ADD COLUMN max_age integer CHECK (max_age >= 0),
    ADD COLUMN login_after bigint;
