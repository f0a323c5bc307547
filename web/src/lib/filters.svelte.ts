// Device-list filters saved under a name: the list's address, kept in this browser.
const STORAGE_KEY = "roost.filters";

export interface SavedFilter {
  name: string;
  href: string;
}

function load(): SavedFilter[] {
  try {
    const parsed = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "[]");
    return Array.isArray(parsed) ? parsed.filter((f) => typeof f?.name === "string" && typeof f?.href === "string") : [];
  } catch {
    return [];
  }
}

class SavedFilters {
  list = $state<SavedFilter[]>(load());

  save(name: string, href: string) {
    this.list = [...this.list.filter((f) => f.name !== name), { name, href }].sort((a, b) => a.name.localeCompare(b.name));
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.list));
  }

  remove(name: string) {
    this.list = this.list.filter((f) => f.name !== name);
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.list));
  }
}

export const savedFilters = new SavedFilters();
