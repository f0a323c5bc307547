// Role tiers, lowest first, as the API names them; a user or key is given a role no higher than
// the caller's own (the API refuses higher ones, and platform-admin outside the platform).
import type { components } from "../api/schema";
import type { Key } from "./i18n.svelte";

export type Role = components["schemas"]["Role"];

export const ROLES: readonly { role: Role; label: Key }[] = [
  { role: "read-only", label: "role.read-only" },
  { role: "basic", label: "role.basic" },
  { role: "advanced", label: "role.advanced" },
  { role: "org-admin", label: "role.org-admin" },
  { role: "platform-admin", label: "role.platform-admin" },
];

/// The roles `own` may give.
export function grantable(own: Role | undefined): readonly { role: Role; label: Key }[] {
  const rank = ROLES.findIndex((r) => r.role === own);
  return ROLES.slice(0, rank + 1);
}

export function roleLabel(role: Role): Key {
  return ROLES.find((r) => r.role === role)?.label ?? "role.read-only";
}
