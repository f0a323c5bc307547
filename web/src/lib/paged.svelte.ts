// A list the server pages with cursors: the page shown, whether there is a next one, and why
// it could not be read. One way for every list of the portal (`components/Pager.svelte` moves
// through it).
import type { Outcome } from "./request.svelte";
import { message } from "./request.svelte";

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export class Paged<T> {
  items = $state<T[] | null>(null);
  next = $state<string | null>(null);
  /// The page shown: undefined for the first.
  cursor = $state<string | undefined>(undefined);
  error = $state("");

  constructor(private readonly fetchPage: (cursor: string | undefined) => Promise<Outcome<Page<T>>>) {}

  /// The latest load: an answer to an earlier one (a slow reload overtaken by a click on the
  /// next page) is dropped.
  private loading = 0;

  load = async () => {
    this.error = "";
    const mine = ++this.loading;
    const outcome = await this.fetchPage(this.cursor);
    if (mine !== this.loading) return;
    if (outcome.ok) {
      this.items = outcome.data.items;
      this.next = outcome.data.next_cursor ?? null;
    } else this.error = message(outcome.problem);
  };

  first = () => {
    this.cursor = undefined;
    return this.load();
  };

  following = () => {
    if (!this.next) return;
    this.cursor = this.next;
    return this.load();
  };
}
