// The organizations the caller sees (its own and those below it), as a tree in display order,
// and the one the portal is looking at: the switcher in the header narrows the dashboard and
// the device list to an organization and those below it (kept in localStorage).
import { api } from "../api/client";
import type { components } from "../api/schema";
import { attempt } from "./request.svelte";

export type Organization = components["schemas"]["OrganizationView"];
export interface Node {
  org: Organization;
  depth: number;
}

const STORAGE_KEY = "roost.org";

/// Depth-first, each organization under its parent, siblings by name.
export function tree(orgs: readonly Organization[]): Node[] {
  const bySlug = new Set(orgs.map((o) => o.slug));
  const children = new Map<string | null, Organization[]>();
  for (const org of orgs) {
    // A root here is one whose parent the caller does not see.
    const parent = org.parent && bySlug.has(org.parent) ? org.parent : null;
    children.set(parent, [...(children.get(parent) ?? []), org]);
  }
  const out: Node[] = [];
  const walk = (parent: string | null, depth: number) => {
    for (const org of (children.get(parent) ?? []).sort((a, b) => a.name.localeCompare(b.name))) {
      out.push({ org, depth });
      walk(org.slug, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

class Orgs {
  nodes = $state<Node[]>([]);
  /// The organization looked at; empty: all the caller sees.
  selected = $state(localStorage.getItem(STORAGE_KEY) ?? "");

  async load() {
    const all: Organization[] = [];
    let cursor: string | undefined;
    do {
      const page = await attempt(() => api.GET("/api/v1/orgs", { params: { query: { limit: 500, cursor } } }));
      if (!page.ok) break;
      all.push(...page.data.items);
      cursor = page.data.next_cursor ?? undefined;
    } while (cursor);
    this.nodes = tree(all);
    if (this.selected && !all.some((o) => o.slug === this.selected)) this.select("");
  }

  select(slug: string) {
    this.selected = slug;
    if (slug) localStorage.setItem(STORAGE_KEY, slug);
    else localStorage.removeItem(STORAGE_KEY);
  }

  clear() {
    this.nodes = [];
  }
}

export const orgs = new Orgs();
