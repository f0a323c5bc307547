// What the signed-in caller may do, from `GET /auth/me`'s `permissions`: pages offer only these
// controls (the API refuses the rest anyway, so this is about what a person sees, not safety).
import type { components } from "../api/schema";
import { session } from "./session.svelte";

export type Permission = components["schemas"]["Permission"];

export function can(permission: Permission): boolean {
  return session.caller?.permissions.includes(permission) ?? false;
}
