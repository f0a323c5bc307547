// The API client: typed by `schema.d.ts`, which `openapi-typescript` generates from Roost's own
// OpenAPI document (`scripts/build-web.sh`), so a route or field the server changes breaks the
// portal's type check rather than the portal.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";
import { session } from "../lib/session.svelte";

export type Problem = components["schemas"]["Problem"];

let refreshing: Promise<boolean> | null = null;

/// Trades the refresh token for a new pair, once however many requests found the access token
/// expired at the same time.
async function refresh(): Promise<boolean> {
  const tokens = session.tokens;
  if (!tokens) return false;
  refreshing ??= (async () => {
    try {
      const response = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: tokens.refresh }),
      });
      if (!response.ok) return false;
      session.store(await response.json());
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/// Sends with the access token; on 401 refreshes it once and sends again. A session that cannot
/// be refreshed ends, and the portal returns to the sign-in page.
export async function authorized(input: Request): Promise<Response> {
  const retry = input.clone();
  const send = (request: Request) => {
    const token = session.tokens?.access;
    if (token) request.headers.set("authorization", `Bearer ${token}`);
    return fetch(request);
  };
  const response = await send(input);
  if (response.status !== 401 || !session.tokens) return response;
  if (await refresh()) return send(retry);
  session.clear(true);
  return response;
}

export const api = createClient<paths>({ baseUrl: "", fetch: authorized });
