// The signed-in session: the token pair (kept in localStorage, so a reload or a second tab stays
// signed in) and who the caller is (`GET /auth/me`: role, organization, permissions), shown in
// the header; the pages with actions will offer only what `permissions` holds (the API refuses
// the rest anyway).
import type { components } from "../api/schema";

export type Caller = components["schemas"]["CallerView"];
type Tokens = components["schemas"]["TokenResponse"];

const STORAGE_KEY = "roost.session";

interface Stored {
  access: string;
  refresh: string;
}

function load(): Stored | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Stored) : null;
  } catch {
    return null;
  }
}

class Session {
  tokens = $state<Stored | null>(load());
  caller = $state<Caller | null>(null);
  /// Set when the session ended by itself (the refresh token expired or was revoked), for the
  /// sign-in page to say why.
  expired = $state(false);
  /// Something the sign-in page tells the user (a password changed: sign in with the new one).
  notice = $state("");

  get signedIn(): boolean {
    return this.tokens !== null;
  }

  store(tokens: Tokens) {
    this.tokens = { access: tokens.access_token, refresh: tokens.refresh_token };
    this.expired = false;
    this.notice = "";
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.tokens));
  }

  /// Ends the session. One that expired keeps its caller: the page stays, with what was typed
  /// in it, under the sign-in dialog, and carries on once the same user signs in again.
  clear(expired: boolean) {
    this.tokens = null;
    if (!expired) this.caller = null;
    this.expired = expired;
    localStorage.removeItem(STORAGE_KEY);
  }

  /// Signed in again over a page whose session ended: the page goes on only for the same
  /// caller (by its id, as `/auth/me` says now, with its role as it is now); anyone else starts
  /// over.
  resumed(now: Caller | null) {
    const same = now && this.caller && now.kind === this.caller.kind && now.id === this.caller.id;
    this.caller = same ? now : null;
  }
}

export const session = new Session();

// Another tab signing in or out changes this one too. Tokens that arrive while this tab had
// none (its session ended) may be someone else's: the caller is read again, and the page with it.
window.addEventListener("storage", (event) => {
  if (event.key === STORAGE_KEY) {
    const had = session.tokens !== null;
    session.tokens = load();
    if (!session.tokens || !had) session.caller = null;
  }
});
