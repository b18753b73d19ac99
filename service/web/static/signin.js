/* Signing in with the city's ID: OpenID Connect authorization code with PKCE (RFC 7636), in the
 * browser. The page asks its own server which provider (/app/sign-in.json), sends the citizen
 * there with a fresh verifier's challenge, a state and a nonce (kept in this tab only), and on
 * the way back checks the state, trades the code and the verifier for an ID token at the
 * provider's token endpoint, checks its nonce, and signs in with it. The server checks the
 * token itself (service/rights/oidc.py); this script only gets it. */
"use strict";
window.OsmanthusSignIn = (function () {
  const KEY = "osmanthus.pkce";

  function b64url(bytes) {
    let text = "";
    for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
  const redirectUri = () => `${location.origin}/app`;

  async function settings() {
    try {
      const res = await fetch("/app/sign-in.json", { cache: "no-store" });
      return res.ok ? (await res.json()).provider : null;
    } catch (err) { return null; }
  }

  async function go(provider) {
    const verifier = random(32);
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const state = random(16), nonce = random(16);
    sessionStorage.setItem(KEY, JSON.stringify({ verifier, state, nonce, provider }));
    const query = new URLSearchParams({
      response_type: "code", client_id: provider.client_id, redirect_uri: redirectUri(),
      scope: "openid", state, nonce, code_challenge: challenge, code_challenge_method: "S256",
    });
    location.assign(`${provider.authorization_endpoint}?${query}`);
  }

  function claims(token) {
    const part = (token.split(".")[1] || "").replace(/-/g, "+").replace(/_/g, "/");
    try { return JSON.parse(atob(part)); } catch (err) { return {}; }
  }

  /* Back from the provider: the ID token, or an Error whose message says what went wrong
   * (`code` one of "state", "provider", "network"); null when this is not a return. */
  async function returned() {
    const query = new URLSearchParams(location.search);
    if (!query.has("code") && !query.has("error")) return null;
    history.replaceState(null, "", "/app");  // the code leaves the address bar and history
    const kept = JSON.parse(sessionStorage.getItem(KEY) || "null");
    sessionStorage.removeItem(KEY);
    const failure = (code) => Object.assign(new Error(code), { code });
    if (!kept || query.get("state") !== kept.state) throw failure("state");
    if (query.has("error")) throw failure("provider");
    let res;
    try {
      res = await fetch(kept.provider.token_endpoint, {
        method: "POST", cache: "no-store",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code", code: query.get("code"), redirect_uri: redirectUri(),
          client_id: kept.provider.client_id, code_verifier: kept.verifier,
        }),
      });
    } catch (err) { throw failure("network"); }
    const answer = res.ok ? await res.json().catch(() => null) : null;
    if (!answer || typeof answer.id_token !== "string") throw failure("provider");
    if (claims(answer.id_token).nonce !== kept.nonce) throw failure("state");
    return answer.id_token;
  }

  return { settings, go, returned };
})();
